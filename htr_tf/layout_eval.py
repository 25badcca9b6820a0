"""Layout metrics: mean IoU of handwritten areas, line precision/recall and COCO-style AP.

* :func:`match_detections`: COCO's matching of one image: detections by descending score,
  each taking the unmatched ground-truth box it overlaps most (IoU >= threshold).
* :func:`average_precision`: COCO's 101-point interpolated AP over a set of images;
  :func:`coco_map` averages it over IoU thresholds 0.50:0.05:0.95.
* :func:`evaluate_paragraph` / :func:`evaluate_lines`: a model on a record set's forms.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from htr_tf.geometry import box_iou

__all__ = ["match_detections", "average_precision", "coco_map", "precision_recall", "line_metrics", "LineCounts",
           "evaluate_paragraph", "evaluate_lines", "COCO_THRESHOLDS"]

#: IoU thresholds of COCO's mAP.
COCO_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def match_detections(boxes: np.ndarray, scores: np.ndarray, gt: np.ndarray, iou_threshold: float
                     ) -> np.ndarray:
    """True-positive flags of ``boxes`` (in their given order) against ``gt``, COCO style.

    Detections are visited by descending score (stable); each is a true positive when an
    unmatched ground-truth box overlaps it with IoU >= ``iou_threshold``, taking the one
    with the highest IoU.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    gt = np.asarray(gt, np.float32).reshape(-1, 4)
    tp = np.zeros(len(boxes), bool)
    if len(boxes) == 0 or len(gt) == 0:
        return tp
    iou = box_iou(boxes, gt)
    taken = np.zeros(len(gt), bool)
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        cand = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(cand))
        if cand[j] >= iou_threshold:
            taken[j] = True
            tp[i] = True
    return tp


def average_precision(detections: Sequence[tuple[np.ndarray, np.ndarray]], ground_truth: Sequence[np.ndarray],
                      iou_threshold: float = 0.5) -> float:
    """COCO's 101-point interpolated average precision over images.

    ``detections[i] = (boxes [N, 4], scores [N])`` and ``ground_truth[i] = boxes [M, 4]`` of
    image ``i``.  NaN when there is no ground truth at all.
    """
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} detection sets but {len(ground_truth)} ground-truth sets")
    n_gt = sum(len(np.asarray(g).reshape(-1, 4)) for g in ground_truth)
    if n_gt == 0:
        return float("nan")
    flags, all_scores = [], []
    for (boxes, scores), gt in zip(detections, ground_truth):
        flags.append(match_detections(boxes, scores, gt, iou_threshold))
        all_scores.append(np.asarray(scores, np.float64).reshape(-1))
    tp = np.concatenate(flags) if flags else np.zeros(0, bool)
    sc = np.concatenate(all_scores) if all_scores else np.zeros(0)
    order = np.argsort(-sc, kind="stable")
    tp = tp[order]
    ctp = np.cumsum(tp)
    cfp = np.cumsum(~tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1)
    if len(precision) == 0:
        return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, np.linspace(0.0, 1.0, 101), side="left")
    sampled = np.zeros(101)
    ok = idx < len(envelope)
    sampled[ok] = envelope[idx[ok]]
    return float(np.mean(sampled))


def coco_map(detections: Sequence[tuple[np.ndarray, np.ndarray]], ground_truth: Sequence[np.ndarray],
             thresholds: Iterable[float] = COCO_THRESHOLDS) -> float:
    """Mean of :func:`average_precision` over IoU ``thresholds`` (COCO's AP@[.50:.95])."""
    return float(np.mean([average_precision(detections, ground_truth, t) for t in thresholds]))


class LineCounts:
    """True positives, detections and ground-truth boxes at one IoU threshold, summed over images."""

    def __init__(self, iou_threshold: float = 0.5) -> None:
        self.iou_threshold = iou_threshold
        self.tp = self.detections = self.ground_truth = 0

    def add(self, boxes: np.ndarray, scores: np.ndarray, gt: np.ndarray) -> None:
        flags = match_detections(boxes, scores, gt, self.iou_threshold)
        self.tp += int(flags.sum())
        self.detections += len(flags)
        self.ground_truth += len(np.asarray(gt).reshape(-1, 4))

    def as_dict(self) -> dict[str, float]:
        p = self.tp / self.detections if self.detections else float("nan")
        r = self.tp / self.ground_truth if self.ground_truth else float("nan")
        f1 = 2 * p * r / (p + r) if self.detections and self.ground_truth and p + r > 0 else 0.0
        return {"precision": p, "recall": r, "f1": f1, "tp": self.tp, "detections": self.detections,
                "ground_truth": self.ground_truth}


def precision_recall(detections: Sequence[tuple[np.ndarray, np.ndarray]], ground_truth: Sequence[np.ndarray],
                     iou_threshold: float = 0.5) -> dict[str, float]:
    """Precision, recall and F1 of all detections (any score) at ``iou_threshold``."""
    c = LineCounts(iou_threshold)
    for (b, s), g in zip(detections, ground_truth):
        c.add(b, s, g)
    return c.as_dict()


def line_metrics(detections: Sequence[tuple[np.ndarray, np.ndarray]], ground_truth: Sequence[np.ndarray]
                 ) -> dict[str, float]:
    """Precision/recall/F1 at IoU 0.5 and 0.75, AP50, AP75 and mAP (COCO AP@[.50:.95])."""
    out: dict[str, float] = {}
    for t in (0.5, 0.75):
        pr = precision_recall(detections, ground_truth, t)
        tag = f"{int(round(t * 100))}"
        out.update({f"precision{tag}": pr["precision"], f"recall{tag}": pr["recall"], f"f1{tag}": pr["f1"]})
    out["ap50"] = average_precision(detections, ground_truth, 0.5)
    out["ap75"] = average_precision(detections, ground_truth, 0.75)
    out["map"] = coco_map(detections, ground_truth)
    ious = [box_iou(b, g).max(axis=0) if len(b) and len(g) else np.zeros(len(g))
            for (b, _), g in zip(detections, ground_truth)]
    flat = np.concatenate(ious) if ious else np.zeros(0)
    out["mean_best_iou"] = float(flat.mean()) if flat.size else float("nan")
    return out


# -- over record sets ----------------------------------------------------------------------------------
Progress = Callable[[int, int], None]


def _forms(records: Any, split: str, limit: int | None):
    from htr_tf.data.records import RecordSet
    from htr_tf.fileio import decode_image

    rs = records if isinstance(records, RecordSet) else RecordSet(records)
    total = rs.count("forms", split)
    rs.files("forms", split)  # a clear error for a missing split
    if limit is not None:
        total = min(total, limit)
    n = 0
    for ex in rs.iter_forms(split):
        if limit is not None and n >= limit:
            break
        n += 1
        yield total, ex, decode_image(ex["image"], f"{rs.path}:{ex['id']}")


def evaluate_paragraph(model: Any, records: str | os.PathLike | Any, split: str = "test",
                       limit: int | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Mean IoU of ``model.detect`` against the forms' paragraph boxes, with per-page records."""
    pages, ious, seconds = [], [], 0.0
    for total, ex, page in _forms(records, split, limit):
        t0 = time.perf_counter()
        box, score = model.detect(page)
        seconds += time.perf_counter() - t0
        gt = np.asarray(ex["paragraph_box"], np.float32)
        iou = float(box_iou(box, gt)[0, 0])
        ious.append(iou)
        pages.append({"id": ex["id"], "source": ex["source"], "iou": iou, "score": score,
                      "box": [round(float(v), 1) for v in box], "gt": [round(float(v), 1) for v in gt]})
        if progress is not None:
            progress(len(pages), total)
    a = np.asarray(ious)
    return {"split": split, "pages": len(pages),
            "mean_iou": float(a.mean()) if a.size else float("nan"),
            "median_iou": float(np.median(a)) if a.size else float("nan"),
            "min_iou": float(a.min()) if a.size else float("nan"),
            "iou_at_least_0.95": float((a >= 0.95).mean()) if a.size else float("nan"),
            "ms_per_page": 1000 * seconds / max(len(pages), 1), "per_page": pages}


def evaluate_lines(detector: Any, records: str | os.PathLike | Any, split: str = "test",
                   paragraph: Any = None, limit: int | None = None,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Line precision/recall/AP of ``detector`` on a record set's forms.

    The area searched is the form's ground-truth paragraph box, or the one ``paragraph``
    (a :class:`~htr_tf.models.paragraph.ParagraphModel`) predicts when given (end to end).
    """
    dets, gts, pages, seconds = [], [], [], 0.0
    for total, ex, page in _forms(records, split, limit):
        t0 = time.perf_counter()
        region = paragraph.predict(page) if paragraph is not None else np.asarray(ex["paragraph_box"])
        boxes, scores = detector.detect(page, region)
        seconds += time.perf_counter() - t0
        gt = np.asarray(ex["line_boxes"], np.float32).reshape(-1, 4)
        dets.append((boxes, scores))
        gts.append(gt)
        pr = precision_recall([(boxes, scores)], [gt], 0.5)
        pages.append({"id": ex["id"], "source": ex["source"], "lines": len(gt), "detected": len(boxes),
                      "precision50": pr["precision"], "recall50": pr["recall"]})
        if progress is not None:
            progress(len(pages), total)
    report: dict[str, Any] = {"split": split, "pages": len(pages), "area": "paragraph model" if paragraph
                              is not None else "ground truth"}
    report.update(line_metrics(dets, gts))
    report["ms_per_page"] = 1000 * seconds / max(len(pages), 1)
    report["per_page"] = pages
    return report
