"""Tuning the LM decoders' weights on a validation set (``htr lm tune``), beside evaluation.

The recogniser runs once over the lines (the pages' path, :mod:`htr_tf.recognize`); every
setting of a grid then decodes the same log-probabilities and is scored with the pooled
rates of :func:`htr_tf.metrics.score_lines`.  :func:`save_tuned_decoder` writes the best
setting into the recogniser bundle's ``htr.json`` (``decoding``), so every export carries it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from htr_tf.charset import Charset
from htr_tf.errors import ConfigError, DataError
from htr_tf.metrics import score_lines

__all__ = ["DEFAULT_GRIDS", "LOCAL_OPTIONS", "grid_search", "tune_decoder", "save_tuned_decoder"]


#: Default grids of ``htr lm tune`` per decoder (beam width fixed at 50 unless given).
DEFAULT_GRIDS: dict[str, dict[str, list]] = {
    "beam+lm": {"lm_weight": [0.5, 1.0, 1.5, 2.0, 3.0], "word_score": [-1.0, 0.0, 1.0, 2.0]},
    "beam+lm+lexicon": {"lm_weight": [0.5, 1.0, 1.5, 2.0, 3.0], "word_score": [-1.0, 0.0, 1.0, 2.0]},
    "beam+charlm": {"lm_weight": [0.5, 1.0, 1.5, 2.0, 3.0], "sil_score": [-1.0, 0.0, 1.0]},
}


def grid_search(log_probs: np.ndarray, lengths: np.ndarray, refs: Sequence[str], charset: Charset,
                decoder: str = "beam+lm", grid: dict[str, Sequence[Any]] | None = None,
                fixed: dict[str, Any] | None = None, metric: str = "cer",
                progress: bool = False, table: Any = None) -> dict[str, Any]:
    """Decode ``log_probs`` with every combination of ``grid`` and score against ``refs``.

    Returns ``{"decoder", "metric", "results": [{options, cer, wer, lines_per_second}], "best"}``
    where ``best`` holds the winning options with their CER/WER (ties: the faster setting).
    ``table`` (a file) gets one aligned row per setting as they finish.
    """
    import itertools

    from htr_tf.decode import get_decoder

    if metric not in ("cer", "wer"):
        raise ConfigError(f"metric must be cer or wer, got {metric!r}")
    grid = dict(grid) if grid else {}
    for k, v in DEFAULT_GRIDS.get(decoder, {}).items():
        grid.setdefault(k, v)
    fixed = dict(fixed or {})
    if "beam_width" not in grid:
        fixed.setdefault("beam_width", 50)
    names = sorted(grid)
    combos = list(itertools.product(*(grid[n] for n in names)))
    if not combos:
        raise ConfigError("empty tuning grid")
    if table is not None:
        print(" ".join(f"{n:>12s}" for n in names) + f" {'CER %':>7s} {'WER %':>7s} {'lines/s':>8s}",
              file=table, flush=True)
    it: Iterable = combos
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(combos, desc=f"tuning {decoder}", unit="setting", leave=False)
    results = []
    for values in it:
        opts = {**fixed, **dict(zip(names, values))}
        dec = get_decoder(decoder, **opts)
        t0 = time.perf_counter()
        try:
            hyps = [line.text for line in dec.decode(log_probs, lengths, charset)]
        finally:
            close = getattr(dec, "close", None)
            if close is not None:
                close()
        dt = time.perf_counter() - t0
        s = score_lines(list(refs), hyps)
        row = {"options": dict(zip(names, values)), "cer": s["cer"], "wer": s["wer"],
               "lines_per_second": round(len(hyps) / dt, 2) if dt > 0 else None}
        results.append(row)
        if table is not None:
            print(" ".join(f"{v!s:>12s}" for v in values)
                  + f" {100 * s['cer']:7.2f} {100 * s['wer']:7.2f} {row['lines_per_second'] or 0:8.1f}",
                  file=table, flush=True)
    best = min(results, key=lambda r: (r[metric], r["wer" if metric == "cer" else "cer"],
                                       -(r["lines_per_second"] or 0)))
    return {"decoder": decoder, "metric": metric, "fixed": fixed, "grid": {n: list(grid[n]) for n in names},
            "lines": len(refs), "results": results,
            "best": {"decoder": decoder, **fixed, **best["options"], "cer": best["cer"], "wer": best["wer"]}}


def tune_decoder(model: Any, data: str | os.PathLike, split: str = "validation",
                 decoder: str = "beam+lm", grid: dict[str, Sequence[Any]] | None = None,
                 fixed: dict[str, Any] | None = None, limit: int | None = None, batch_size: int = 32,
                 metric: str = "cer", progress: bool = False, table: Any = None) -> dict[str, Any]:
    """Tune LM decoding of a recogniser on a record set's ``split`` (see :func:`grid_search`).

    ``model`` is a recogniser bundle directory, a loaded recogniser or any pipeline backend.
    The recogniser runs once, through the pages' path (:func:`htr_tf.recognize.crop_log_probs`);
    its log-probabilities (padded to the longest line) are then decoded with every setting.
    """
    from htr_tf.data.records import RecordSet
    from htr_tf.fileio import decode_image
    from htr_tf.recognize import crop_log_probs, line_model

    if isinstance(model, (str, os.PathLike)):
        from htr_tf.models.recognizer import Recognizer

        lm_model = line_model(Recognizer.load(model))
    else:
        lm_model = line_model(model)
    cs = lm_model.charset
    rs = RecordSet(data)
    if split not in rs.splits("lines"):
        raise DataError(f"{data}: no line split {split!r}; it has {rs.splits('lines')}")
    crops, refs = [], []
    for ex in rs.iter_lines(split):
        if limit is not None and len(refs) >= limit:
            break
        crops.append(decode_image(ex["image"], f"{data}:{split}:{ex['id']}"))
        refs.append(cs.normalize(ex["text"]))
    if not refs:
        raise DataError(f"{data}: split {split!r} has no lines")
    lps = crop_log_probs(lm_model, crops, batch_size)
    T = max(x.shape[0] for x in lps)
    log_probs = np.zeros((len(lps), T, cs.num_classes), np.float32)
    lengths = np.array([x.shape[0] for x in lps], np.int64)
    for i, x in enumerate(lps):
        log_probs[i, : x.shape[0]] = x
    result = grid_search(log_probs, lengths, refs, cs, decoder, grid, fixed, metric, progress, table)
    result.update(model=str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__,
                  data=str(data), split=split)
    return result


#: Decoder options that name files or processes of this machine, not weights of the model:
#: recorded as provenance by :func:`save_tuned_decoder`, never as tuned values.
LOCAL_OPTIONS = ("lm", "lexicon", "workers")


def save_tuned_decoder(model: str | os.PathLike, result: dict[str, Any]) -> dict[str, Any]:
    """Make the best setting of a :func:`tune_decoder` result the defaults of its decoder for
    ``model`` (a recogniser bundle): written into the bundle's ``htr.json`` under
    ``decoding`` (see :func:`htr_tf.decode.decoder_defaults`); returns the entry written.

    The values are the decoder's constructor options that were tuned or fixed, without
    :data:`LOCAL_OPTIONS`; ``tuned`` records the data, split, line count, metric, the CER and
    WER reached, the LM and lexicon used (null: the decoder's default) and the grid.
    """
    import datetime as _dt

    from htr_tf.models.recognizer import Recognizer
    from htr_tf.provenance import describe_records

    decoder, best, fixed = result["decoder"], result["best"], result.get("fixed", {})
    options = {k: v for k, v in best.items()
               if k in set(result.get("grid", {})) | set(fixed) and k not in LOCAL_OPTIONS}

    def name(p: Any) -> str | None:          # what a file was, not where it lay (htr_tf.provenance)
        return Path(p).name if p else None

    data = result.get("data")
    tuned = {"data": name(data), "records": describe_records(data, result.get("split")) if data else None,
             "split": result.get("split"), "lines": result.get("lines"),
             "metric": result.get("metric"), "cer": best.get("cer"), "wer": best.get("wer"),
             "lm": name(fixed.get("lm")), "lexicon": name(fixed.get("lexicon")), "grid": result.get("grid"),
             "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    meta = Recognizer.save_decoder_settings(model, decoder, options, tuned)
    return meta["decoding"][decoder]
