"""Fit the printed-or-handwritten classifier (:mod:`htr_tf.line_type`) and put it into a line
detector bundle (``htr train line-type``).

Examples come from form records, as the page pipeline will see lines:

* every record set gives *handwritten* examples: box crops of its ground-truth lines;
* a record set whose handwriting is all in its ground truth (``forms``: synthetic forms, the
  copiste pages) gives *printed* examples too: the lines the pipeline finds outside the
  handwritten area (:func:`htr_tf.printed.find_printed_lines`) that match no ground-truth line.

The classifier is fitted on the training sets, scored on the validation sets (per source: how
many printed lines would be read as handwriting, how many handwritten ones left out) and
written into a copy of the line detector bundle, whose config carries it everywhere.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from htr_tf.errors import ConfigError

__all__ = ["LineTypeSource", "collect_line_type_samples", "train_line_type", "THRESHOLDS"]

#: Thresholds the validation outside lines are also scored at (``validation_thresholds`` in the info).
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


@dataclass(frozen=True)
class LineTypeSource:
    """A form record set's split; ``forms``: its handwriting is all in the ground truth, so
    lines found outside the handwritten area and matching no ground-truth line are printed."""

    records: str
    split: str = "train"
    forms: bool = False

    @classmethod
    def parse(cls, spec: str, forms: bool, default_split: str) -> "LineTypeSource":
        """``RECORDS[:SPLIT]``."""
        path, _, split = spec.partition(":")
        if not path:
            raise ConfigError(f"bad record spec {spec!r}: expected RECORDS[:SPLIT]")
        return cls(path, split or default_split, forms)


def collect_line_type_samples(pipeline: Any, source: LineTypeSource, limit: int | None = None,
                              per_page: int = 6, seed: int = 0, progress: bool = False
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features ``[N, NUM_FEATURES]``, printed ``[N]`` 0/1, outside ``[N]`` bool) from one source's
    pages: up to ``per_page`` ground-truth lines per page (handwritten), and with ``source.forms``
    the lines found outside the handwritten area: handwritten where one matches a ground-truth
    line (IoU >= 0.5), printed (or not text at all: a rule, a grid) where it matches none."""
    from htr_tf import crop as _crop
    from htr_tf.evaluate_pipeline import pages_from_records
    from htr_tf.geometry import box_iou
    from htr_tf.line_type import NUM_FEATURES, line_features

    o = pipeline.options
    # the layout as the pipeline finds it, with every outside line reported as printed
    layout_pipe = type(pipeline)(pipeline.backend, "greedy", replace(o, classify_outside=False, find_printed=True))
    rng = np.random.default_rng(seed)
    total, pages = pages_from_records(source.records, source.split, limit)
    if progress:
        from tqdm import tqdm

        pages = tqdm(pages, total=total, desc=f"line types {Path(source.records).name}:{source.split}", unit="page")
    feats, labels, outside = [], [], []

    def add(page: np.ndarray, box: np.ndarray, label: int, out: bool) -> None:
        crop, _ = _crop.cut_line(page, box, pad_x=o.line_pad_x, pad_y=o.line_pad_y, isolate=False)
        feats.append(line_features(crop))
        labels.append(label)
        outside.append(out)

    for page in pages:
        gt = np.asarray(page.line_boxes if page.line_boxes is not None else np.zeros((0, 4)), np.float32).reshape(-1, 4)
        for k in rng.permutation(len(gt))[:per_page]:
            add(page.image, gt[k], 0, False)
        if source.forms:
            found = layout_pipe.find_layout(page.image).printed_boxes
            overlap = box_iou(found, gt)
            for k, box in enumerate(found):
                best = float(overlap[k].max()) if overlap.size else 0.0
                if best >= 0.5:
                    add(page.image, box, 0, True)
                elif best <= 0.05:
                    add(page.image, box, 1, True)
    if not feats:
        return np.zeros((0, NUM_FEATURES), np.float32), np.zeros((0,), np.int64), np.zeros((0,), bool)
    return np.stack(feats), np.asarray(labels, np.int64), np.asarray(outside, bool)


def _score(config: Any, X: np.ndarray, y: np.ndarray, outside: np.ndarray) -> dict[str, Any]:
    """How the lines found outside the area would be taken (what the pipeline classifies), and
    how all handwritten examples would (ground-truth lines anywhere on the page)."""
    p = config.probability(X) if len(X) else np.zeros(0)
    hand = p < config.threshold
    o = outside
    return {"outside_handwritten": int((o & (y == 0)).sum()),
            "outside_handwritten_read": int((o & (y == 0) & hand).sum()),
            "outside_printed": int((o & (y == 1)).sum()),
            "outside_printed_read_as_handwriting": int((o & (y == 1) & hand).sum()),
            "handwritten_lines": int((y == 0).sum()),
            "handwritten_lines_taken_for_print": int(((y == 0) & ~hand).sum())}


def train_line_type(lines: str | os.PathLike, out: str | os.PathLike, train: Sequence[LineTypeSource],
                    validation: Sequence[LineTypeSource] = (), threshold: float = 0.5, limit: int | None = None,
                    per_page: int = 6, l2: float = 1.0, seed: int = 0, paragraph: str | os.PathLike | None = None,
                    progress: bool = False, backend: Any = None) -> dict[str, Any]:
    """Fit the classifier on ``train``, score it on ``validation``, write ``lines`` with it to
    ``out`` (atomically); returns the info stored with it.  The pages' layout is found by
    ``backend`` (default: the Keras ``paragraph`` and ``lines`` bundles)."""
    from htr_tf.line_type import fit_line_type
    from htr_tf.models.lines import LineDetector
    from htr_tf.pipeline import LocalBackend, Pipeline

    if not train:
        raise ConfigError("htr train line-type: no training record sets (--forms / --handwritten)")
    if not any(s.forms for s in train):
        raise ConfigError("htr train line-type: printed examples come from --forms record sets; give at least one")
    detector = LineDetector.load(lines)
    if backend is None:
        backend = LocalBackend.load(paragraph=paragraph, lines=lines)
    pipe = Pipeline(backend, "greedy")
    Xs, ys, outs, counts = [], [], [], {}
    for i, s in enumerate(train):
        X, y, out_ = collect_line_type_samples(pipe, s, limit, per_page, seed + i, progress)
        Xs.append(X)
        ys.append(y)
        outs.append(out_)
        counts[f"{s.records}:{s.split}"] = {"handwritten": int((y == 0).sum()), "printed": int((y == 1).sum()),
                                            "outside_handwritten": int((out_ & (y == 0)).sum())}
    X, y, outside = np.concatenate(Xs), np.concatenate(ys), np.concatenate(outs)
    info: dict[str, Any] = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                            "train": counts, "l2": l2, "per_page": per_page, "limit": limit}
    config = fit_line_type(X, y, l2=l2, threshold=threshold)
    info["train_score"] = _score(config, X, y, outside)
    val: dict[str, Any] = {}
    pooled: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for i, s in enumerate(validation):
        Xv, yv, ov = collect_line_type_samples(pipe, s, limit, 10 ** 6, seed + 100 + i, progress)
        val[f"{s.records}:{s.split}"] = _score(config, Xv, yv, ov)
        pooled.append((Xv, yv, ov))
    info["validation"] = val
    info["validation_threshold"] = threshold     # the per-source scores above; the sweep below pools them
    if pooled:   # the outside lines of all validation sets at other thresholds, to choose one
        Xv, yv, ov = (np.concatenate(z) for z in zip(*pooled))
        info["validation_thresholds"] = {f"{t:.2f}": _score(replace(config, threshold=t), Xv, yv, ov)
                                         for t in THRESHOLDS}
    config = replace(config, info=info)
    detector.config = replace(detector.config, line_type=config)
    detector.info = {**detector.info, "line_type": "htr train line-type (htr_tf.train.line_type)"}
    detector.save(out)
    return info
