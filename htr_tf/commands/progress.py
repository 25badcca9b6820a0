"""A tqdm progress bar for the long ``htr`` commands, as the ``progress(done, total)`` callback
that the evaluation functions take."""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator

__all__ = ["progress_bar"]


@contextlib.contextmanager
def progress_bar(desc: str, unit: str, quiet: bool) -> Iterator[Callable[[int, int], None] | None]:
    """Yield a callback that moves a bar on stderr (closed on exit), or None when ``quiet``."""
    if quiet:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit=unit, file=sys.stderr, leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        bar.close()
