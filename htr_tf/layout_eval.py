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

__all__ = ["match_detections", "match_by_iou", "average_precision", "coco_map", "precision_recall", "line_metrics",
           "LineCounts", "polygon_iou", "baseline_scores", "BaselineCounts", "evaluate_paragraph", "evaluate_lines",
           "COCO_THRESHOLDS"]

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
    if len(boxes) == 0 or len(gt) == 0:
        return np.zeros(len(boxes), bool)
    return match_by_iou(box_iou(boxes, gt), scores, iou_threshold)


def match_by_iou(iou: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """:func:`match_detections` for any shapes: ``iou`` is ``[detections, ground truth]``."""
    iou = np.asarray(iou, np.float64)
    tp = np.zeros(len(np.asarray(scores).reshape(-1)), bool)
    if iou.size == 0:
        return tp
    taken = np.zeros(iou.shape[1], bool)
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


# -- polygons and baselines -----------------------------------------------------------------------------
def polygon_iou(a: Sequence[np.ndarray], b: Sequence[np.ndarray], max_side: int = 1024) -> np.ndarray:
    """``[len(a), len(b)]`` IoU of polygons (each ``[K, 2]`` page px), by rasterising them.

    Pairs whose bounding boxes do not meet are 0 without rasterising; the others are filled
    on a grid whose side is at most ``max_side`` cells (a 2000 px page at 2 px a cell: well
    inside a line's height, so IoU is exact to about a percent).
    """
    import cv2

    a = [np.asarray(p, np.float64).reshape(-1, 2) for p in a]
    b = [np.asarray(p, np.float64).reshape(-1, 2) for p in b]
    out = np.zeros((len(a), len(b)), np.float64)
    if not a or not b:
        return out
    allp = np.concatenate(a + b)
    lo = np.floor(allp.min(0))
    span = float(max(allp.max(0) - lo).max() + 1)
    cell = max(1.0, span / max_side)

    def raster(p: np.ndarray) -> tuple[np.ndarray, int, int]:
        q = (p - lo) / cell
        x0, y0 = np.floor(q.min(0)).astype(int)
        x1, y1 = np.ceil(q.max(0)).astype(int) + 1
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(m, [np.round((q - (x0, y0)) * 4).astype(np.int32)], 1, shift=2)
        return m, x0, y0

    ra = [raster(p) for p in a]
    rb = [raster(p) for p in b]
    areas_a = np.array([m.sum() for m, _, _ in ra], np.float64)
    areas_b = np.array([m.sum() for m, _, _ in rb], np.float64)
    for i, (ma, ax, ay) in enumerate(ra):
        for j, (mb, bx, by) in enumerate(rb):
            x0, y0 = max(ax, bx), max(ay, by)
            x1, y1 = min(ax + ma.shape[1], bx + mb.shape[1]), min(ay + ma.shape[0], by + mb.shape[0])
            if x1 <= x0 or y1 <= y0:
                continue
            inter = float(np.count_nonzero(ma[y0 - ay:y1 - ay, x0 - ax:x1 - ax] & mb[y0 - by:y1 - by, x0 - bx:x1 - bx]))
            union = areas_a[i] + areas_b[j] - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def _sample_polyline(p: np.ndarray, step: float) -> np.ndarray:
    """Points every ``step`` pixels along a polyline (its vertices included)."""
    p = np.asarray(p, np.float64).reshape(-1, 2)
    if len(p) < 2:
        return p
    out = [p[:1]]
    for u, v in zip(p[:-1], p[1:]):
        n = max(1, int(np.ceil(np.linalg.norm(v - u) / step)))
        t = np.arange(1, n + 1)[:, None] / n
        out.append(u + t * (v - u))
    return np.concatenate(out)


def _interline_tolerances(gt: Sequence[np.ndarray], ratio: float) -> np.ndarray:
    """Per ground-truth baseline, ``ratio`` x the vertical distance to the nearest other
    baseline that shares some of its x range (the page median where none does)."""
    n = len(gt)
    d = np.full(n, np.inf)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            lo = max(gt[i][:, 0].min(), gt[j][:, 0].min())
            hi = min(gt[i][:, 0].max(), gt[j][:, 0].max())
            if hi <= lo:
                continue
            xs = np.linspace(lo, hi, 8)
            yi = np.interp(xs, *_sorted_xy(gt[i]))
            yj = np.interp(xs, *_sorted_xy(gt[j]))
            dist = float(np.median(np.abs(yi - yj)))
            if dist > 0:
                d[i] = min(d[i], dist)
    finite = d[np.isfinite(d)]
    fallback = float(np.median(finite)) if finite.size else 40.0
    return ratio * np.where(np.isfinite(d), d, fallback)


def _sorted_xy(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    o = np.argsort(p[:, 0], kind="stable")
    return p[o, 0], p[o, 1]


class BaselineCounts:
    """Baseline detection scores in the manner of the cBAD / READ evaluation scheme, summed
    over pages: a ground-truth baseline point is *found* when a detected baseline passes
    within its line's tolerance, a detected point is *correct* when a ground-truth baseline
    passes within the tolerance of the nearest ground-truth line; recall and precision are
    the fractions of points (so of baseline length).

    The tolerance of a ground-truth line is ``tolerance_ratio`` x its distance to the nearest
    neighbouring baseline (cBAD's default scales with the interline distance too).  Unlike
    the official tool this one gives no partial credit between one and three tolerances and
    does not align split or merged lines first: its numbers are comparable with each other,
    not with published cBAD scores.
    """

    def __init__(self, tolerance_ratio: float = 0.25, step: float = 2.0) -> None:
        self.ratio, self.step = tolerance_ratio, step
        self.gt_points = self.gt_found = self.det_points = self.det_correct = 0

    def add(self, detected: Sequence[np.ndarray], gt: Sequence[np.ndarray]) -> dict[str, float]:
        """Add one page; returns that page's precision, recall and F."""
        import cv2

        gt = [np.asarray(g, np.float64).reshape(-1, 2) for g in gt if len(np.asarray(g).reshape(-1, 2)) >= 2]
        det = [np.asarray(d, np.float64).reshape(-1, 2) for d in detected if len(np.asarray(d).reshape(-1, 2)) >= 2]
        gs = [_sample_polyline(g, self.step) for g in gt]
        ds = [_sample_polyline(d, self.step) for d in det]
        n_g = sum(len(g) for g in gs)
        n_d = sum(len(d) for d in ds)
        found = correct = 0
        if gs and ds:
            tol = _interline_tolerances(gt, self.ratio)
            allp = np.concatenate(gs + ds)
            lo = np.floor(allp.min(0)) - 2
            size = np.ceil(allp.max(0) - lo).astype(int) + 3
            shape = (int(size[1]), int(size[0]))

            def grid(points: np.ndarray) -> np.ndarray:
                return np.round(points - lo).astype(np.int64)

            det_img = np.ones(shape, np.uint8)
            for d in ds:
                q = grid(d)
                det_img[q[:, 1], q[:, 0]] = 0
            dist_det = cv2.distanceTransform(det_img, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            for g, t in zip(gs, tol):
                q = grid(g)
                found += int((dist_det[q[:, 1], q[:, 0]] <= t).sum())
            gt_img = np.ones(shape, np.uint8)
            line_of = np.zeros(shape, np.int32)
            for k, g in enumerate(gs):
                q = grid(g)
                gt_img[q[:, 1], q[:, 0]] = 0
                line_of[q[:, 1], q[:, 0]] = k
            dist_gt, lab = cv2.distanceTransformWithLabels(gt_img, cv2.DIST_L2, cv2.DIST_MASK_5,
                                                           labelType=cv2.DIST_LABEL_PIXEL)
            zero_line = line_of[gt_img == 0]                 # labels number the zero pixels in scan order
            for d in ds:
                q = grid(d)
                nearest = zero_line[lab[q[:, 1], q[:, 0]] - 1]
                correct += int((dist_gt[q[:, 1], q[:, 0]] <= tol[nearest]).sum())
        self.gt_points += n_g
        self.gt_found += found
        self.det_points += n_d
        self.det_correct += correct
        return _prf(correct, n_d, found, n_g)

    def as_dict(self) -> dict[str, float]:
        return _prf(self.det_correct, self.det_points, self.gt_found, self.gt_points)


def _prf(correct: int, n_det: int, found: int, n_gt: int) -> dict[str, float]:
    p = correct / n_det if n_det else float("nan")
    r = found / n_gt if n_gt else float("nan")
    f = 2 * p * r / (p + r) if n_det and n_gt and p + r > 0 else 0.0
    return {"precision": p, "recall": r, "f1": f}


def baseline_scores(detected: Sequence[Sequence[np.ndarray]], gt: Sequence[Sequence[np.ndarray]],
                    tolerance_ratio: float = 0.25) -> dict[str, float]:
    """cBAD-style baseline precision, recall and F over pages (:class:`BaselineCounts`)."""
    c = BaselineCounts(tolerance_ratio)
    for d, g in zip(detected, gt):
        c.add(d, g)
    return c.as_dict()


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


def _gt_points(ex: dict, name: str, n: int) -> list[np.ndarray] | None:
    """A form record's per-line polygons or baselines (``name``), None when it has none."""
    lens = np.asarray(ex.get(f"line_{name}_len", ()), np.int64).reshape(-1)
    if len(lens) != n or n == 0 or not (lens > 0).all():
        return None
    from htr_tf.data.records import split_points

    return split_points(ex[f"line_{name}_xy"], lens)


def _box_polygon(b: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = (float(v) for v in b)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


class _SourceTally:
    """Line counts (boxes, polygons) and baseline points of one source or of all pages."""

    def __init__(self) -> None:
        self.pages = 0
        self.boxes = LineCounts(0.5)
        self.polygons = LineCounts(0.5)
        self.polygon_pages = 0
        self.baselines = BaselineCounts()
        self.baseline_pages = 0

    def as_dict(self) -> dict[str, Any]:
        b = self.boxes.as_dict()
        d: dict[str, Any] = {"pages": self.pages, "lines": b["ground_truth"], "detected": b["detections"],
                             "recall50": b["recall"], "precision50": b["precision"], "f150": b["f1"]}
        if self.polygon_pages:
            p = self.polygons.as_dict()
            d.update({"polygon_pages": self.polygon_pages, "polygon_recall50": p["recall"],
                      "polygon_precision50": p["precision"], "polygon_f150": p["f1"]})
        if self.baseline_pages:
            bl = self.baselines.as_dict()
            d.update({"baseline_pages": self.baseline_pages, "baseline_precision": bl["precision"],
                      "baseline_recall": bl["recall"], "baseline_f1": bl["f1"]})
        return d


def _add_counts(c: LineCounts, iou: np.ndarray, scores: np.ndarray, n_gt: int) -> dict[str, float]:
    flags = match_by_iou(iou, scores, c.iou_threshold)
    c.tp += int(flags.sum())
    c.detections += len(flags)
    c.ground_truth += n_gt
    p = flags.mean() if len(flags) else float("nan")
    r = flags.sum() / n_gt if n_gt else float("nan")
    return {"precision": float(p), "recall": float(r)}


def evaluate_lines(detector: Any, records: str | os.PathLike | Any, split: str = "test",
                   paragraph: Any = None, limit: int | None = None,
                   progress: Progress | None = None, shapes: bool = True) -> dict[str, Any]:
    """Line precision/recall/AP of ``detector`` on a record set's forms, and with ``shapes``
    the polygons and baselines :func:`htr_tf.line_shapes.line_shapes` derives from its boxes
    (detections without writing of their own, e.g. rules of ruled paper, are then dropped,
    as the page pipeline drops them).

    The area searched is the form's ground-truth paragraph box, or the one ``paragraph``
    (a :class:`~htr_tf.models.paragraph.ParagraphModel`) predicts when given (end to end).
    Forms whose records carry line polygons (``htr data xml-prepare``) are scored on polygon
    IoU too (precision/recall at 0.5, :func:`polygon_iou`), and those with baselines on
    cBAD-style baseline precision/recall/F (:class:`BaselineCounts`); every score is also
    given per source (``per_source``).
    """
    from htr_tf.line_shapes import line_shapes

    dets, gts, pages, seconds, shape_seconds, dropped = [], [], [], 0.0, 0.0, 0
    tallies: dict[str, _SourceTally] = {}
    total_tally = _SourceTally()
    for total, ex, page in _forms(records, split, limit):
        t0 = time.perf_counter()
        region = paragraph.predict(page) if paragraph is not None else np.asarray(ex["paragraph_box"])
        boxes, scores = detector.detect(page, region)
        seconds += time.perf_counter() - t0
        found: list = []
        if shapes:                                     # lines with no writing of their own are dropped
            t1 = time.perf_counter()
            found = line_shapes(page, boxes)
            shape_seconds += time.perf_counter() - t1
            keep = np.array([f.from_ink for f in found], bool)
            dropped += int((~keep).sum())
            boxes, scores = boxes[keep], scores[keep]
            found = [f for f, k in zip(found, keep) if k]
        gt = np.asarray(ex["line_boxes"], np.float32).reshape(-1, 4)
        dets.append((boxes, scores))
        gts.append(gt)
        tally = tallies.setdefault(ex["source"] or "unknown", _SourceTally())
        rec: dict[str, Any] = {"id": ex["id"], "source": ex["source"], "lines": len(gt), "detected": len(boxes)}
        box_iou_m = box_iou(boxes, gt) if len(boxes) and len(gt) else np.zeros((len(boxes), len(gt)))
        for t in (tally, total_tally):
            t.pages += 1
            pr = _add_counts(t.boxes, box_iou_m, scores, len(gt))
        rec.update({"precision50": pr["precision"], "recall50": pr["recall"]})
        if shapes:
            gt_poly = _gt_points(ex, "polygon", len(gt))
            if gt_poly is not None:
                iou = polygon_iou([f.polygon for f in found], gt_poly)
                for t in (tally, total_tally):
                    t.polygon_pages += 1
                    pp = _add_counts(t.polygons, iou, scores, len(gt))
                rec.update({"polygon_precision50": pp["precision"], "polygon_recall50": pp["recall"]})
            gt_base = _gt_points(ex, "baseline", len(gt))
            if gt_base is not None:
                det_base = [f.baseline for f in found]
                bl = tally.baselines.add(det_base, gt_base)
                total_tally.baselines.add(det_base, gt_base)
                tally.baseline_pages += 1
                total_tally.baseline_pages += 1
                rec.update({"baseline_precision": bl["precision"], "baseline_recall": bl["recall"],
                            "baseline_f1": bl["f1"]})
        pages.append(rec)
        if progress is not None:
            progress(len(pages), total)
    report: dict[str, Any] = {"split": split, "pages": len(pages), "area": "paragraph model" if paragraph
                              is not None else "ground truth"}
    report.update(line_metrics(dets, gts))
    report.update({k: v for k, v in total_tally.as_dict().items()
                   if k.startswith(("polygon", "baseline"))})
    report["ms_per_page"] = 1000 * (seconds + shape_seconds) / max(len(pages), 1)
    if shapes:
        report["shapes_ms_per_page"] = 1000 * shape_seconds / max(len(pages), 1)
        report["dropped_without_writing"] = dropped
    report["per_source"] = {k: v.as_dict() for k, v in sorted(tallies.items())}
    report["per_page"] = pages
    return report
