"""Printed text kept apart from handwriting: where it is on a page, and how well it is kept out.

The handwritten-area model (:mod:`htr_tf.models.paragraph`) is trained on the union of the
handwritten lines' boxes, so a form's printed header and prompt, or a letterhead, lie
outside the area it finds; the page pipeline reads the lines inside the area as handwriting.
Here the rest of the page is searched for text lines with the same line detector, and what
it finds there becomes *printed* regions (:attr:`htr_tf.results.RegionResult.type`):
reported with boxes and polygons, recognised only when asked
(:attr:`htr_tf.pipeline.PipelineOptions.read_printed`, ``htr ocr --include-printed``).

* :func:`outside_bands`: where the detector looks: the full-width band above the area and
  the one below it, and a strip beside the area where one is wide enough (a margin of
  ``margin`` median line heights is kept from the area, so the handwriting's ascenders and
  descenders stay out).  Each band is cut down to the rows that hold ink (:func:`ink_rows`,
  plus a line height), and a bare band is not searched: the detector's time grows with the
  band's height, and a form's footer band is mostly paper.  Every backend has
  ``find_lines(page, region)``, so this runs the same on Keras, LiteRT and a model server.
* :func:`find_printed_lines`: those detections, minus the ones that overlap a handwritten
  line.
* :func:`printed_ink_boxes` and :func:`count_inside`: the score.  On a page whose
  handwriting is known (a synthetic form's ground-truth line boxes), every character-sized
  ink component outside the handwritten lines is printed ink (rules, too long and thin, and
  specks, too small, are not); a page keeps printed text apart when none of those lies
  inside a handwritten region's outline.

>>> outside_bands((100, 300, 900, 700), (1000, 1000), line_height=40.0)
[(0.0, 0.0, 1000.0, 290.0), (0.0, 710.0, 1000.0, 1000.0)]
"""

from __future__ import annotations

from dataclasses import dataclass
import os
import time
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["PrintedOptions", "outside_bands", "ink_rows", "find_printed_lines", "printed_ink_boxes", "count_inside",
           "evaluate_printed"]


@dataclass(frozen=True)
class PrintedOptions:
    """Where printed lines are looked for (:func:`outside_bands`) and which are kept."""

    #: Distance kept from the handwritten area, in median handwritten line heights.
    margin: float = 0.25
    #: Bands thinner than this fraction of the page height (or of its width, for side
    #: strips) hold no line worth reporting and are not searched.
    min_band: float = 0.02
    #: A strip beside the area is searched only when at least this fraction of the page wide.
    min_side: float = 0.15
    #: A detection that has more than this fraction of its box inside a handwritten line's
    #: box is part of the handwriting, not printed text.
    max_overlap: float = 0.3
    #: Each band is cut down to the rows that hold ink (:func:`ink_rows`), plus this many
    #: median line heights above and below, before the detector sees it: a form's footer band
    #: is mostly bare paper, and the detector's time grows with the band's height.  A band
    #: with no ink is not searched.  ``None`` searches the bands whole.
    trim_pad: float | None = 1.0


def outside_bands(area: Sequence[float], page_shape: tuple[int, int], line_height: float,
                  options: PrintedOptions | None = None) -> list[tuple[float, float, float, float]]:
    """Regions (xyxy page px) of a ``page_shape`` (h, w) page outside the handwritten ``area``
    where printed lines are looked for: above, below, then left and right of it."""
    o = options or PrintedOptions()
    h, w = float(page_shape[0]), float(page_shape[1])
    x0, y0, x1, y1 = (float(v) for v in area)
    m = o.margin * max(float(line_height), 0.0)
    out = []
    if y0 - m >= o.min_band * h:
        out.append((0.0, 0.0, w, y0 - m))
    if h - (y1 + m) >= o.min_band * h:
        out.append((0.0, y1 + m, w, h))
    top, bottom = max(y0 - m, 0.0), min(y1 + m, h)
    if bottom - top >= o.min_band * h:
        if x0 - m >= o.min_side * w:
            out.append((0.0, top, x0 - m, bottom))
        if w - (x1 + m) >= o.min_side * w:
            out.append((x1 + m, top, w, bottom))
    return out


def ink_rows(page: np.ndarray, band: Sequence[float], step: int = 4, min_ink: int = 3,
             threshold: float | None = None) -> tuple[float, float] | None:
    """First and last page row of ``band`` (xyxy page px) that hold ink, from a sample of
    every ``step``-th pixel: rows with at least ``min_ink`` sampled pixels darker than
    ``threshold`` (default: Otsu's on the sample); ``None`` when none does.  A sample is
    enough to tell where text lies (a text line is many sampled rows high and crosses many
    sampled columns) at a small part of the cost of reading the band."""
    from htr_tf.crop import ink_threshold

    x0, y0, x1, y1 = (int(round(float(v))) for v in band)
    sample = np.ascontiguousarray(page[max(y0, 0):max(y1, 0):step, max(x0, 0):max(x1, 0):step])
    if sample.size == 0:
        return None
    if threshold is None:
        threshold = ink_threshold(sample)
    rows = np.nonzero(np.count_nonzero(sample <= threshold, axis=1) >= min_ink)[0]
    if len(rows) == 0:
        return None
    top = max(y0, 0)
    return float(top + rows[0] * step), float(min(top + rows[-1] * step + step, y1))


def _trimmed(page: np.ndarray, band: tuple[float, float, float, float], pad: float,
             threshold: float) -> tuple[float, float, float, float] | None:
    """``band`` cut down to its inked rows plus ``pad`` px (None: no ink)."""
    rows = ink_rows(page, band, threshold=threshold)
    if rows is None:
        return None
    x0, y0, x1, y1 = band
    return (x0, max(y0, rows[0] - pad), x1, min(y1, rows[1] + pad))


def _inside_fraction(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each box, the largest fraction of its area that lies inside one of ``others``."""
    if len(boxes) == 0 or len(others) == 0:
        return np.zeros(len(boxes), np.float32)
    ix = np.clip(np.minimum(boxes[:, None, 2], others[None, :, 2]) - np.maximum(boxes[:, None, 0], others[None, :, 0]),
                 0, None)
    iy = np.clip(np.minimum(boxes[:, None, 3], others[None, :, 3]) - np.maximum(boxes[:, None, 1], others[None, :, 1]),
                 0, None)
    own = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-6)
    return (ix * iy / own[:, None]).max(axis=1)


def find_printed_lines(find_lines: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
                       page: np.ndarray, area: Sequence[float], handwritten: np.ndarray,
                       options: PrintedOptions | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Text lines of ``page`` outside the handwritten ``area``: (boxes ``[N, 4]`` xyxy page px,
    top to bottom, scores ``[N]``).

    ``find_lines(page, region)`` is a backend's line detector; ``handwritten`` (``[M, 4]``)
    are the lines found inside the area, whose median height sets the margin and which
    detections must not overlap.
    """
    o = options or PrintedOptions()
    hand = np.asarray(handwritten, np.float32).reshape(-1, 4)
    lh = float(np.median(hand[:, 3] - hand[:, 1])) if len(hand) else 0.0
    boxes, scores = [], []
    bands = outside_bands(area, page.shape[:2], lh, o)
    if bands and o.trim_pad is not None:
        from htr_tf.crop import ink_threshold

        # one ink threshold for the page (a band of bare paper has no ink to find)
        threshold = ink_threshold(np.ascontiguousarray(page[::4, ::4]))
        pad = o.trim_pad * (lh if lh > 0 else 0.02 * page.shape[0])
        bands = [t for t in (_trimmed(page, band, pad, threshold) for band in bands) if t is not None]
    for band in bands:
        b, s = find_lines(page, np.asarray(band, np.float32))
        b = np.asarray(b, np.float32).reshape(-1, 4)
        s = np.asarray(s, np.float32).reshape(-1)
        keep = _inside_fraction(b, hand) <= o.max_overlap
        b, s = b[keep], s[keep]
        # a detection reaching out of its band is cut back to it (the band is what it saw)
        b = np.clip(b, [band[0], band[1], band[0], band[1]], [band[2], band[3], band[2], band[3]])
        keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        boxes.append(b[keep])
        scores.append(s[keep])
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    b, s = np.concatenate(boxes), np.concatenate(scores)
    order = np.lexsort((b[:, 0], b[:, 1]))
    return b[order], s[order]


# -- the score ------------------------------------------------------------------------------------
def printed_ink_boxes(page: np.ndarray, handwritten: np.ndarray, pad: float = 0.1,
                      min_height: float = 0.15, max_height: float = 1.5, max_aspect: float = 15.0
                      ) -> np.ndarray:
    """Boxes (``[K, 4]`` xyxy page px) of the character-sized ink components of a gray uint8
    ``page`` that lie outside every handwritten line box (``handwritten``, ``[M, 4]``, the
    ground truth, grown by ``pad`` median line heights).

    Components shorter than ``min_height`` or taller than ``max_height`` median handwritten
    line heights (specks, page borders) and longer than ``max_aspect`` times their height
    (rules) are not text.
    """
    import cv2

    hand = np.asarray(handwritten, np.float32).reshape(-1, 4)
    if len(hand) == 0:
        return np.zeros((0, 4), np.float32)
    lh = float(np.median(hand[:, 3] - hand[:, 1]))
    _, ink = cv2.threshold(np.asarray(page, np.uint8), 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    st = stats[1:].astype(np.float32)
    b = np.stack([st[:, 0], st[:, 1], st[:, 0] + st[:, 2], st[:, 1] + st[:, 3]], axis=1)
    h, w = st[:, 3], st[:, 2]
    text_like = (h >= min_height * lh) & (h <= max_height * lh) & (w <= max_aspect * h)
    grown = hand + np.array([-1, -1, 1, 1], np.float32) * pad * lh
    outside = _inside_fraction(b, grown) == 0.0
    return b[text_like & outside]


def count_inside(boxes: np.ndarray, polygons: Sequence[np.ndarray]) -> int:
    """How many of ``boxes`` (``[K, 4]`` xyxy) have their centre inside one of ``polygons``."""
    import cv2

    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    if len(b) == 0 or not polygons:
        return 0
    centres = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)
    inside = np.zeros(len(b), bool)
    for p in polygons:
        c = np.asarray(p, np.float32).reshape(-1, 1, 2)
        inside |= np.array([cv2.pointPolygonTest(c, (float(x), float(y)), False) >= 0 for x, y in centres])
    return int(inside.sum())


def evaluate_printed(pipeline: Any, records: str | os.PathLike | Any, split: str = "test",
                     limit: int | None = None, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """How well ``pipeline``'s layout (:meth:`~htr_tf.pipeline.Pipeline.find_layout`) keeps
    printed text apart on the forms of a record set whose handwritten lines are all in the
    ground truth (synthetic forms: everything else on the page is print).

    Per page: the printed ink components (:func:`printed_ink_boxes`), how many of them lie
    inside a handwritten region's outline and inside a handwritten line's polygon (both
    should be 0), and how many inside a printed line's box (found).  Pooled: pages with
    printed ink inside a handwritten region, and the share of printed components found.
    """
    from htr_tf.layout_eval import _forms

    rows, seconds = [], 0.0
    for total, ex, page in _forms(records, split, limit):
        t0 = time.perf_counter()
        layout = pipeline.find_layout(page)
        seconds += time.perf_counter() - t0
        regions = layout.regions()
        hand = [r for r in regions if r.type == "handwritten" and r.lines]
        printed = [r for r in regions if r.type == "printed"]
        ink = printed_ink_boxes(page, np.asarray(ex["line_boxes"], np.float32).reshape(-1, 4))
        pboxes = [np.array([(b[0], b[1]), (b[2], b[1]), (b[2], b[3]), (b[0], b[3])], np.float32)
                  for r in printed for b in (ln.box for ln in r.lines)]
        rows.append({"id": ex["id"], "source": ex["source"], "printed_components": int(len(ink)),
                     "in_handwritten_regions": count_inside(ink, [r.polygon for r in hand if r.polygon is not None]),
                     "in_handwritten_lines": count_inside(ink, [ln.polygon for r in hand for ln in r.lines
                                                                if ln.polygon is not None]),
                     "found": count_inside(ink, pboxes), "printed_regions": len(printed),
                     "printed_lines": sum(len(r.lines) for r in printed),
                     "handwritten_lines": sum(len(r.lines) for r in hand)})
        if progress is not None:
            progress(len(rows), total)
    n_ink = sum(r["printed_components"] for r in rows)
    return {"split": split, "pages": len(rows),
            "pages_printed_in_handwritten_region": sum(r["in_handwritten_regions"] > 0 for r in rows),
            "pages_printed_in_handwritten_line": sum(r["in_handwritten_lines"] > 0 for r in rows),
            "printed_components": n_ink,
            "printed_found": sum(r["found"] for r in rows) / n_ink if n_ink else float("nan"),
            "pages_with_printed_regions": sum(r["printed_regions"] > 0 for r in rows),
            "layout_ms_per_page": 1000 * seconds / max(len(rows), 1), "per_page": rows}
