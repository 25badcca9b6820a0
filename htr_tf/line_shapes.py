"""Line polygons and baselines from detected line boxes and the page's ink.

The line detector (:mod:`htr_tf.models.lines`) predicts each line's central *band* and
grows it into a box; boxes of neighbouring lines overlap, so a box crop holds the
neighbours' ascenders and descenders.  Here each line gets the outline of its own writing,
as kraken's baseline segmenter gives (a bounding polygon plus a baseline), from the boxes
alone, so every backend (Keras, TFLite, a model server that returns boxes) gets the same
shapes:

1. the page (inside the union of each cluster of nearby lines, plus a margin) is shrunk so a
   median line is about :attr:`ShapeOptions.work_line_height` pixels high (polygons do not need more, and the
   page benchmark's layout budget is 0.15 s), binarised with Otsu, and thin straight rules
   longer than ``rule_length`` line heights (ruled paper, margins) are removed;
2. every ink component is given to the line whose band (the central ``band_fraction`` of
   its box, where the detector saw the line) it overlaps most; a component touching no band
   (a dot, a comma, an accent) goes to the line whose band is nearest vertically, if its
   centre lies inside that line's box (or one line height past its ends: a final full stop
   or hyphen); components of no line are left out;
3. the **polygon** spans the line's own ink from left to right and follows, column bin by
   column bin, the top and the bottom of that ink and of the band, clipped to the box grown
   by ``reach`` line heights (a stroke touching the next line does not drag the outline into
   it); it is x-monotone, so never self-intersecting;
4. the **baseline** is, per chunk of about ``baseline_chunk`` line heights, the median of
   the lowest ink pixel of each column of the chunk (most columns end on the baseline;
   descenders are the minority), joined left to right across the ink's extent; a line with
   one chunk gets a straight baseline, longer ones follow the writing's curve.

A line without ink keeps its box as polygon and gets a baseline at ``1 - empty_baseline``
of its height.  The cost is a few milliseconds per page (``benchmarks/bench_page.py``).

>>> shapes = line_shapes(gray, boxes)                                   # doctest: +SKIP
>>> shapes[0].polygon.shape, shapes[0].baseline.shape                   # doctest: +SKIP
((24, 2), (5, 2))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from htr_tf.geometry import connected_groups, union_box

__all__ = ["LineShape", "ShapeOptions", "line_shapes"]


@dataclass(frozen=True)
class LineShape:
    """A line's outline and baseline, ``[K, 2]`` float32 page pixels (x, y)."""

    polygon: np.ndarray
    baseline: np.ndarray
    #: False when the line had no writing of its own (the polygon is then its box): a
    #: detection on a rule of ruled paper or on a smudge, which callers may drop.
    from_ink: bool = True


@dataclass(frozen=True)
class ShapeOptions:
    """How :func:`line_shapes` outlines lines (defaults chosen on synthetic and copiste pages)."""

    #: The band of a box the detector predicted, as a fraction of the box height.
    band_fraction: float = 0.4
    #: Median line height (pixels) the page is shrunk to before the ink is analysed.
    work_line_height: float = 32.0
    #: Column bin width of the polygon, in line heights.
    bin_width: float = 0.25
    #: How far above and below its box a line's outline may reach, in line heights.
    reach: float = 0.25
    #: Chunk width of the baseline estimate, in line heights.
    baseline_chunk: float = 3.0
    #: Components smaller than this (pixels at work scale) are noise.
    min_component: int = 2
    #: Where the baseline of a line without ink lies, as a fraction of its box height from the bottom.
    empty_baseline: float = 0.25
    #: Straight horizontal or vertical ink runs longer than this many line heights are rules
    #: (ruled paper, margins, form lines), removed before the ink is analysed (0: kept).
    rule_length: float = 2.0
    #: A line's ink counts as writing when a tenth of its inked columns are at least this
    #: many line heights tall (what a rule leaves is thinner); otherwise the line has no ink.
    min_stroke: float = 0.12
    #: Take the darkest pixel of each neighbourhood before shrinking the page (a min filter
    #: as wide as one work pixel), so thin faint marks (a comma, a full stop, a hairline
    #: flourish) stay ink at work scale instead of being averaged into the paper.
    keep_thin_marks: bool = True


def _remove_rules(ink: np.ndarray, length: float, thickness: float) -> np.ndarray:
    """``ink`` without thin straight horizontal or vertical runs longer than ``length`` pixels
    (ruled paper, margins, form lines): they are not writing, and would join the lines.  A run
    ``thickness`` pixels thick or more (a bar, a filled box) is not a rule and stays."""
    import cv2

    k = max(3, int(round(length)))
    t = max(3, int(round(thickness)))
    # grown 2 px across first, so a rule skewed by up to ~2 degrees still has runs of k pixels
    h = cv2.morphologyEx(cv2.dilate(ink, np.ones((5, 1), np.uint8)), cv2.MORPH_OPEN, np.ones((1, k), np.uint8))
    h &= 1 - cv2.morphologyEx(h, cv2.MORPH_OPEN, np.ones((t + 4, 1), np.uint8))
    v = cv2.morphologyEx(cv2.dilate(ink, np.ones((1, 5), np.uint8)), cv2.MORPH_OPEN, np.ones((k, 1), np.uint8))
    v &= 1 - cv2.morphologyEx(v, cv2.MORPH_OPEN, np.ones((1, t + 4), np.uint8))
    return ink & (1 - (h | v))


def _otsu_ink(gray: np.ndarray) -> np.ndarray:
    import cv2

    _, ink = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    return ink


def line_shapes(gray: np.ndarray, boxes: np.ndarray, options: ShapeOptions | None = None) -> list[LineShape]:
    """Polygon and baseline of each line at ``boxes`` (``[N, 4]`` xyxy page px) of a gray uint8 page."""
    o = options or ShapeOptions()
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    if n == 0:
        return []
    lh = float(np.median(np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)))
    # lines far apart (a form's printed header and footer) are outlined on separate work areas,
    # each with room around it to tell a rule from writing, at one page-wide ink threshold
    context = o.reach * lh + 2 + max(o.rule_length, 1.0) * lh
    clusters = _clusters(boxes, context)
    if len(clusters) == 1:
        return _shapes_in_area(gray, boxes, lh, o)
    threshold = _union_threshold(gray, boxes, lh, o)
    out: list[LineShape | None] = [None] * n
    for members in clusters:
        for i, shape in zip(members, _shapes_in_area(gray, boxes[members], lh, o, threshold, context)):
            out[i] = shape
    return out  # type: ignore[return-value]


def _union_threshold(gray: np.ndarray, boxes: np.ndarray, lh: float, o: ShapeOptions) -> float:
    """Otsu's ink threshold over the union of all the lines (plus margin), as one work area
    would set it, from a nearest-neighbour sample at work scale (a few ms for a whole page):
    ink is told from paper page-wide, so a cluster holding only paper (a detection on a
    smudge) does not find "ink" in its noise."""
    import cv2

    ax0, ay0, ax1, ay1 = _work_box(boxes, o.reach * lh + 2, gray.shape)
    if ax1 - ax0 < 2 or ay1 - ay0 < 2:
        return -1.0                                    # no page under the lines: nothing is ink
    area = gray[ay0:ay1, ax0:ax1]
    s = min(1.0, o.work_line_height / lh)
    size = (max(1, int(round(area.shape[1] * s))), max(1, int(round(area.shape[0] * s))))
    small = cv2.resize(area, size, interpolation=cv2.INTER_NEAREST)
    t, _ = cv2.threshold(small, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    return float(t)


def _clusters(boxes: np.ndarray, margin: float) -> list[np.ndarray]:
    """Indices of the groups of ``boxes`` whose boxes, grown by ``margin``, touch (transitively).

    Each group is outlined on its own work area, grown by ``margin`` (enough to see a rule as
    a rule), so a form's printed header and footer do not make the whole page between them
    the work area (that cost 35-80 ms a form); a page's ink threshold stays common to all."""
    g = boxes + np.array([-margin, -margin, margin, margin], np.float32)
    touch = (g[:, None, 0] < g[None, :, 2]) & (g[None, :, 0] < g[:, None, 2]) & \
            (g[:, None, 1] < g[None, :, 3]) & (g[None, :, 1] < g[:, None, 3])
    group = connected_groups(touch)
    return [np.nonzero(group == k)[0] for k in np.unique(group)]


def _work_box(boxes: np.ndarray, margin: float, page_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Integer xyxy box of the union of ``boxes`` grown by ``margin``, clipped to the page."""
    x0, y0, x1, y1 = union_box(boxes)
    H, W = page_shape[:2]
    return (int(max(0, np.floor(x0 - margin))), int(max(0, np.floor(y0 - margin))),
            int(min(W, np.ceil(x1 + margin))), int(min(H, np.ceil(y1 + margin))))


def _shapes_in_area(gray: np.ndarray, boxes: np.ndarray, lh: float, o: ShapeOptions,
                    threshold: float | None = None, margin: float | None = None) -> list[LineShape]:
    """:func:`line_shapes` of ``boxes`` on one work area: their union plus a margin, at a scale
    where a line of the page's median height ``lh`` is ~``work_line_height`` high."""
    import cv2

    n = len(boxes)
    H, W = gray.shape[:2]
    ax0, ay0, ax1, ay1 = _work_box(boxes, o.reach * lh + 2 if margin is None else margin, gray.shape)
    if ax1 - ax0 < 2 or ay1 - ay0 < 2:
        return [_empty_shape(b, o) for b in boxes]
    s = min(1.0, o.work_line_height / lh)
    area = gray[ay0:ay1, ax0:ax1]
    if s < 1.0:
        k = int(np.floor(1.0 / s))
        if o.keep_thin_marks and k >= 2:
            area = cv2.erode(area, np.ones((k, k), np.uint8))
        area = cv2.resize(area, (max(1, int(round(area.shape[1] * s))), max(1, int(round(area.shape[0] * s)))),
                          interpolation=cv2.INTER_AREA)
    ah, aw = area.shape
    sx, sy = aw / (ax1 - ax0), ah / (ay1 - ay0)
    b = (boxes - np.array([ax0, ay0, ax0, ay0], np.float32)) * np.array([sx, sy, sx, sy], np.float32)
    ink = _otsu_ink(area) if threshold is None else (area <= threshold).astype(np.uint8)
    if o.rule_length > 0:
        ink = _remove_rules(ink, o.rule_length * lh * s, o.min_stroke * lh * s)
    ncomp, labels, stats, centroids = cv2.connectedComponentsWithStats(ink, connectivity=8)
    # bands: the central band_fraction of each box, as a label map (later lines overwrite earlier
    # ones where bands touch; bands of a good detection do not overlap)
    cy = (b[:, 1] + b[:, 3]) / 2
    half = (b[:, 3] - b[:, 1]) * o.band_fraction / 2
    band = np.zeros((ah, aw), np.int32)
    bx0 = np.clip(np.floor(b[:, 0]), 0, aw).astype(int)
    bx1 = np.clip(np.ceil(b[:, 2]), 0, aw).astype(int)
    by0 = np.clip(np.floor(cy - half), 0, ah).astype(int)
    by1 = np.clip(np.ceil(cy + half), 0, ah).astype(int)
    for i in range(n):
        band[by0[i]:max(by1[i], by0[i] + 1), bx0[i]:bx1[i]] = i + 1
    # each component to the band it overlaps most
    owner = np.zeros(ncomp, np.int32)                  # 0: no line, else line index + 1
    both = (labels > 0) & (band > 0)
    if both.any():
        pair = labels[both].astype(np.int64) * (n + 1) + band[both]
        counts = np.bincount(pair, minlength=ncomp * (n + 1)).reshape(ncomp, n + 1)
        counts[:, 0] = 0
        has = counts.max(axis=1) > 0
        owner[has] = counts[has].argmax(axis=1)
    big = stats[:, cv2.CC_STAT_AREA] >= o.min_component
    owner[~big] = 0
    owner[0] = 0
    # components touching no band: the vertically nearest band, if inside that line's box
    loose = np.nonzero((owner == 0) & big)[0]
    loose = loose[loose > 0]
    if len(loose):
        cx, cyc = centroids[loose, 0], centroids[loose, 1]
        grow = (b[:, 3] - b[:, 1])[None, :]                # a full stop or hyphen just past the box's end
        inside = (cx[:, None] >= b[None, :, 0] - grow) & (cx[:, None] < b[None, :, 2] + grow) & \
                 (cyc[:, None] >= b[None, :, 1]) & (cyc[:, None] < b[None, :, 3])
        dist = np.where(inside, np.abs(cyc[:, None] - cy[None, :]), np.inf)
        best = dist.argmin(axis=1)
        ok = np.isfinite(dist[np.arange(len(loose)), best])
        owner[loose[ok]] = best[ok] + 1
    line_of = owner[labels]                            # pixel -> line index + 1 (0: none)
    out = [_shape_of_line(i, b[i], line_of, (bx0[i], by0[i], bx1[i], by1[i]), float(b[i, 3] - b[i, 1]), o, (ah, aw))
           for i in range(n)]
    scale = np.array([1.0 / sx, 1.0 / sy], np.float32)
    offset = np.array([ax0, ay0], np.float32)
    res = []
    for shp, box in zip(out, boxes):
        if shp is None:
            res.append(_empty_shape(box, o))
            continue
        poly, base = shp
        poly = np.clip(poly * scale + offset, 0, [W, H]).astype(np.float32)
        base = np.clip(base * scale + offset, 0, [W, H]).astype(np.float32)
        res.append(LineShape(poly, base, True))
    return res


def _empty_shape(box: np.ndarray, o: ShapeOptions) -> LineShape:
    x0, y0, x1, y1 = (float(v) for v in box)
    yb = y1 - o.empty_baseline * (y1 - y0)
    return LineShape(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32),
                     np.array([[x0, yb], [x1, yb]], np.float32), False)


def _shape_of_line(i: int, box: np.ndarray, line_of: np.ndarray, band: tuple[int, int, int, int], lh: float,
                   o: ShapeOptions, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    """(polygon, baseline) of line ``i`` in work coordinates, or None without ink."""
    ah, aw = shape
    lh = max(lh, 2.0)
    r = o.reach * lh
    x0 = int(max(0, np.floor(box[0] - lh)))
    x1 = int(min(aw, np.ceil(box[2] + lh)))
    y0 = int(max(0, np.floor(box[1] - r)))
    y1 = int(min(ah, np.ceil(box[3] + r)))
    if x1 <= x0 or y1 <= y0:
        return None
    mask = line_of[y0:y1, x0:x1] == i + 1
    inked = mask.any(axis=0)
    if not inked.any():
        return None
    # per column, the top and the bottom of the line's ink (work coordinates)
    col_top = np.argmax(mask, axis=0) + y0
    col_bot = (y1 - 1) - np.argmax(mask[::-1], axis=0)
    # writing has strokes a good part of a line high; what is left of a rule is a thin streak
    if np.percentile(col_bot[inked] - col_top[inked] + 1, 90) < o.min_stroke * lh:
        return None
    cols = np.nonzero(inked)[0]
    bx0, by0, bx1, by1 = band
    left = float(cols[0] + x0)                         # the ink's extent: a detector box stretched by
    right = float(cols[-1] + x0 + 1)                   # a rule or a neighbour does not widen the outline
    step = max(2.0, o.bin_width * lh)
    nb = max(1, int(np.ceil((right - left) / step)))
    edges = left + step * np.arange(nb + 1)
    edges[-1] = right
    k = np.clip(((cols + x0 - left) / step).astype(int), 0, nb - 1)
    top = np.full(nb, np.inf)
    bot = np.full(nb, -np.inf)
    starts = np.searchsorted(k, np.arange(nb))             # k is sorted: bins are runs of columns
    has = np.bincount(k, minlength=nb) > 0
    if has.any():
        top[has] = np.minimum.reduceat(col_top[cols].astype(np.float64), starts[has])
        bot[has] = np.maximum.reduceat(col_bot[cols].astype(np.float64) + 1, starts[has])
    # the band covers its own columns: bins without ink there still have the band's height
    bc = (edges[:-1] + edges[1:]) / 2
    in_band = (bc >= bx0) & (bc < bx1)
    top = np.where(in_band, np.minimum(top, by0), top)
    bot = np.where(in_band, np.maximum(bot, by1), bot)
    empty = ~np.isfinite(top)
    if empty.all():
        return None
    if empty.any():                                    # gaps between words: interpolate
        idx = np.arange(nb)
        top[empty] = np.interp(idx[empty], idx[~empty], top[~empty])
        bot[empty] = np.interp(idx[empty], idx[~empty], bot[~empty])
    upper = [(left, top[0])] + [(float(x), float(t)) for x, t in zip(bc, top)] + [(right, top[-1])]
    lower = [(right, bot[-1])] + [(float(x), float(v)) for x, v in zip(bc[::-1], bot[::-1])] + [(left, bot[0])]
    poly = _simplify(np.array(upper + lower, np.float32))
    # baseline: per chunk, the median of the columns' lowest ink pixels
    col_bottom = col_bot
    ink_left, ink_right = left, right
    chunk = max(4.0, o.baseline_chunk * lh)
    nchunk = max(1, int(round((ink_right - ink_left) / chunk)))
    cedges = np.linspace(ink_left, ink_right, nchunk + 1)
    colx = cols + x0                                   # sorted: chunks are runs of columns
    cid = np.clip(np.searchsorted(cedges, colx, side="right") - 1, 0, nchunk - 1)
    v = col_bottom[cols].astype(np.float64)
    order = np.lexsort((v, cid))
    vs = v[order]
    present, start, count = np.unique(cid[order], return_index=True, return_counts=True)
    med = (vs[start + (count - 1) // 2] + vs[start + count // 2]) / 2
    p = np.stack([(cedges[present] + cedges[present + 1]) / 2, med + 1.0], axis=1)
    if len(p) == 1:
        base = np.array([[ink_left, p[0, 1]], [ink_right, p[0, 1]]], np.float32)
    else:
        if len(p) >= 3:                                # a chunk of descenders must not bend the line
            y = p[:, 1]
            a, b, c = y[:-2], y[1:-1], y[2:]
            mid = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
            p[:, 1] = np.r_[(y[0] + y[1]) / 2, mid, (y[-2] + y[-1]) / 2]
        a, c0 = np.polyfit(p[:, 0], p[:, 1], 1)
        ends = [[ink_left, a * ink_left + c0], [ink_right, a * ink_right + c0]]
        base = np.array([ends[0]] + p.tolist() + [ends[1]], np.float32) if len(p) >= 3 else \
            np.array(ends, np.float32)
    return poly, base


def _simplify(poly: np.ndarray, epsilon: float = 0.75) -> np.ndarray:
    """Drop points that add less than ``epsilon`` work pixels (Douglas-Peucker), keeping >= 3."""
    import cv2

    approx = cv2.approxPolyDP(poly.reshape(-1, 1, 2), epsilon, True).reshape(-1, 2)
    return approx.astype(np.float32) if len(approx) >= 3 else poly
