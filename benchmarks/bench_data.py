"""The small data sets the benchmarks need, made once into a cache folder.

No benchmark default names a folder of the machine that wrote it: a benchmark either takes
its data as a documented argument or asks here, and this module makes it with the project's
own commands into ``$HTR_TF_BENCH_CACHE`` (default ``~/.cache/htr-tf/bench``):

* :func:`synth_records`: ``htr data synth --pages N --seed S`` + ``htr data iam-prepare``
  (synthetic IAM-format forms and their line records; a few minutes once);
* :func:`gw_records`: ``htr data gw-prepare`` of the George Washington pages when
  ``../shared/data/gw`` (beside this repository) is present, else None.

A data set is written into a temporary folder and renamed into place, so an interrupted run
leaves nothing half made.

    python benchmarks/bench_data.py            # make both now; prints their folders
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The GW pages, where a checkout has the shared data folder beside it.
SHARED_GW = REPO.parent / "shared" / "data" / "gw"


def cache_dir() -> Path:
    """``$HTR_TF_BENCH_CACHE`` or ``~/.cache/htr-tf/bench`` (created)."""
    d = Path(os.environ.get("HTR_TF_BENCH_CACHE", "~/.cache/htr-tf/bench")).expanduser()
    d.mkdir(parents=True, exist_ok=True)
    return d


def _made(path: Path) -> bool:
    return (path / "manifest.json").is_file()


def synth_records(pages: int = 400, seed: int = 1) -> Path:
    """Line and form records of ``pages`` synthetic forms (``htr data synth --pages PAGES --seed
    SEED`` then ``iam-prepare``): splits train / validation1 / validation2 / test by writer."""
    from htr_tf.data.iam import prepare_iam
    from htr_tf.data.synth import synthesize

    out = cache_dir() / f"synth-{pages}-seed{seed}-rec"
    if _made(out):
        return out
    forms = cache_dir() / f".synth-{pages}-seed{seed}-forms.tmp"
    shutil.rmtree(forms, ignore_errors=True)
    print(f"[bench_data] htr data synth --pages {pages} --seed {seed} -> {out}", file=sys.stderr, flush=True)
    synthesize(forms, pages, seed=seed, workers=min(2, os.cpu_count() or 1), progress=False)
    try:
        prepare_iam(forms, out, progress=False)       # written beside and renamed into place
    finally:
        shutil.rmtree(forms, ignore_errors=True)
    return out


def gw_records() -> Path | None:
    """GW line records (pages 270-277 train, 278-279 validation) when ``../shared/data/gw`` is
    present, else None."""
    from htr_tf.data.gw import prepare_gw

    if not (SHARED_GW / "transcription.txt").is_file():
        return None
    out = cache_dir() / "gw-rec"
    if not _made(out):
        print(f"[bench_data] htr data gw-prepare --gw {SHARED_GW} -> {out}", file=sys.stderr, flush=True)
        prepare_gw(SHARED_GW, out, train_pages=[str(p) for p in range(270, 278)],
                   val_pages=["278", "279"], progress=False)
    return out


if __name__ == "__main__":
    print(synth_records())
    print(gw_records())
