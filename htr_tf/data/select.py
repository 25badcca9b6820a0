"""Drop lines whose transcription does not describe the ink, by a recogniser's per-line CER.

Some ground truth is not a reading of the page: Copiste d'un jour's transcription is the
text the volunteer copied, so a few percent of its lines differ from the ink (capitals,
punctuation, a skipped or mis-copied word), and line alignment can be off by one.  A
recogniser that has trained on the data still reads such lines with a very high CER: the
per-line report of ``htr evaluate recognizer --report`` shows which.  :func:`select_lines`
copies a record set without those lines (counted in the manifest), so training stops
learning from text that is not there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from htr_tf.errors import DataError

__all__ = ["lines_over_cer", "select_lines"]


def lines_over_cer(report: str | os.PathLike, max_cer: float) -> set[str]:
    """Ids of the lines of an evaluation report whose CER is above ``max_cer`` (a fraction)."""
    path = Path(report)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a readable evaluation report: {e}") from None
    lines = data.get("lines") if isinstance(data, dict) else None
    if not isinstance(lines, list) or (lines and not {"id", "cer"} <= set(lines[0])):
        raise DataError(f"{path}: no per-line records (write it with `htr evaluate recognizer --report`)")
    return {str(r["id"]) for r in lines if float(r["cer"]) > max_cer}


def select_lines(records: str | os.PathLike, out: str | os.PathLike, drop: Iterable[str], *,
                 split: str, reason: str) -> dict:
    """Copy ``records`` to ``out`` (atomically) without the lines ``drop`` of ``split``; every
    other split and every form record is copied unchanged.  Returns the new manifest."""
    import tensorflow as tf

    from htr_tf.data.records import RecordSet, RecordSetWriter

    src = RecordSet(records)
    if Path(out).resolve() == src.path.resolve():
        raise DataError(f"{out}: the output must be a new directory, not the record set itself")
    if split not in src.splits("lines"):
        raise DataError(f"{src.path}: no lines in split {split!r}; available: {src.splits('lines')}")
    drop = set(drop)
    info = dict(src.manifest.get("info", {}))
    info["selected_from"] = {"records": src.path.name, "split": split, "reason": reason, "asked": len(drop)}
    with RecordSetWriter(out, source=src.source, charset=src.charset, info=info) as w:
        for kind in ("lines", "forms"):
            for s in src.splits(kind):
                for raw in tf.data.TFRecordDataset(src.files(kind, s)).as_numpy_iterator():
                    if kind == "lines" and s == split and drop:
                        ex = tf.train.Example.FromString(raw)
                        lid = ex.features.feature["id"].bytes_list.value[0].decode()
                        if lid in drop:
                            w.skip(reason, lid)
                            continue
                    w.add_serialized(kind, s, raw)
        for r, n in src.manifest.get("skipped", {}).items():
            w.skipped[r] += n
        w.unknown_chars.update(src.manifest.get("unknown_chars", {}))
    return RecordSet(out).manifest
