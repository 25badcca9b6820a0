"""Command-line glue of batch OCR (:mod:`htr_tf.batch`), shared by ``htr ocr`` and ``htr beam``.

Only the standard library at the top: building the parser stays instant.
"""

from __future__ import annotations

import argparse
import functools
import sys

#: What a page input may be, for the help of ``htr ocr`` and ``htr beam``.
INPUTS_HELP = ("image files, directories (searched recursively for image files) or glob patterns "
               "(quote them; ** spans folders); outputs keep the subfolders below the directory "
               "or the pattern's fixed part")


def add_batch_arguments(p: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--overwrite`` (used with ``--out``)."""
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="with --out: read pages in N processes, each loading the models once, with "
                        "the CPU threads split between them (default 1)")
    p.add_argument("--overwrite", action="store_true",
                   help="with --out: read every page again, replacing outputs already written "
                        "(default: pages whose output exists are skipped, so a stopped run resumes)")


def expand_inputs(specs: list[str], exclude: tuple[str, ...] = ()) -> list:
    """The :class:`~htr_tf.batch.PageTask` of every page ``specs`` name; notes on stderr,
    a :class:`ConfigError` when nothing is left."""
    from htr_tf.batch import find_pages
    from htr_tf.errors import ConfigError

    tasks, notes = find_pages(specs, exclude)
    for n in notes:
        print(f"htr: warning: {n}", file=sys.stderr)
    if not tasks:
        raise ConfigError("no images to read: " + "; ".join(notes))
    return tasks


def run_ocr_batch(a: argparse.Namespace) -> int:
    """``htr ocr ... --out DIR``: every page into DIR, resumable, in ``--workers`` processes.

    Exit status 1 when a page failed (the others are written; reasons in DIR/errors.jsonl).
    """
    from htr_tf.batch import BatchOptions, run_batch
    from htr_tf.commands.ocr import pipeline_from_args
    from htr_tf.errors import ConfigError

    if a.overlay and a.overlay.lower().endswith(".png"):
        raise ConfigError(f"--overlay with --out names a directory (one PNG per page), not a file: {a.overlay}")
    options = BatchOptions(out_dir=a.out, fmt=a.format, overlay_dir=a.overlay, workers=a.workers,
                           overwrite=a.overwrite)
    tasks = expand_inputs(a.images, exclude=tuple(x for x in (a.out, a.overlay) if x))
    summary = run_batch(tasks, functools.partial(pipeline_from_args, a), options, stream=sys.stderr)
    print(f"htr: {summary.line()}", file=sys.stderr)
    return 1 if summary.failed else 0
