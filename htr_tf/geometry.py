"""Image geometry and normalisation: one place for every resize, pad and box rule.

A line image is gray uint8, dark ink on light paper.  The recogniser sees it (:func:`frame_line`,
:func:`resize_line`):

- with blank margins beyond a small fraction of the ink height cut off (loose crops, e.g. a
  line cut with generous padding, read far worse otherwise: on the validation splits, blank
  paper of half the line height above and below took copiste box crops from 13.8 % to 32.9 %
  CER and GW from 7.7 % to 42.9 %);
- levelled when the geometry says ``deskew`` (a line cut at a slant of 3 degrees read by soup
  P11 at 25.6 % CER on copiste box crops against 13.3 % level, and at 14.0 % levelled);
- resized to ``LineGeometry.height`` keeping the aspect ratio (never squashed, unless wider
  than ``max_width``), normalised to float ``1 - x/255`` so ink is positive and zero padding
  is blank paper;
- read a second time stretched (:func:`stretch_line`) when the geometry says ``reread_density``
  and the first reading was dense (narrow writing), or squeezed when it says ``reread_sparse``
  and the first reading was sparse (wide writing; :func:`htr_tf.recognize.reread_lines`).

Both the numpy path (pipelines, TFLite) and the TF path (tf.data, served graphs) frame a line
identically and resize it with area interpolation, so they agree to within rounding.

Boxes are ``xyxy`` in page pixels (x0, y0, x1, y1) unless a name says otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class LineGeometry:
    """How a text-line image becomes the recogniser's input."""

    height: int = 64
    max_width: int = 2048
    min_width: int = 32
    #: Widths are padded up to a multiple of this (the recogniser's width downsampling).
    width_multiple: int = 8
    #: Cut blank margins down to ``margin_y`` (above and below) and ``margin_x`` (left and
    #: right) times the ink's height before resizing (:func:`trim_margins`); never cuts ink.
    trim: bool = True
    margin_y: float = 0.05
    margin_x: float = 0.2
    #: Level a skewed line before reading it (:func:`skew_slope`, :func:`shear_columns`): after
    #: trimming, columns are shifted up or down by the slope that sharpens the ink's row profile
    #: most, and the margins trimmed again.  Needs ``trim``.  Off in bundles trained without it.
    deskew: bool = False
    #: Narrow writing leaves the CTC too few frames per character: a line whose greedy reading
    #: has more characters per output frame than this is read again, its resized image stretched
    #: to ``reread_stretch`` times its width (:func:`stretch_line`), and the reading with the
    #: higher confidence kept (:func:`htr_tf.recognize.reread_lines`).  0 turns it off (bundles
    #: that predate it).
    reread_density: float = 0.0
    reread_stretch: float = 1.4
    #: Wide writing is the other side: a line whose greedy reading has fewer characters per
    #: output frame than ``reread_sparse`` is read again squeezed to ``reread_squeeze`` times its
    #: width, the surer reading kept as above.  0 turns it off (bundles that predate it).
    reread_sparse: float = 0.0
    reread_squeeze: float = 0.7

    def target_width(self, h: int, w: int) -> int:
        """Width after resizing an ``h x w`` crop to ``height`` with its aspect ratio kept."""
        return self._clip_width(round(w * self.height / max(h, 1)))

    def stretched_width(self, w: int, factor: float | None = None) -> int:
        """Width of a resized line of width ``w`` stretched ``factor`` times (default
        ``reread_stretch``) for a second reading."""
        return self._clip_width(round(w * (self.reread_stretch if factor is None else factor)))

    def network_input(self) -> "LineGeometry":
        """This geometry with the re-reading rules at their defaults (off): what the network was
        trained to see.  Bundles that differ only in those rules are one network."""
        return replace(self, **{f: LineGeometry.__dataclass_fields__[f].default for f in REREAD_FIELDS})

    def read_width(self, resized: int, num_frames: int, downsample: int) -> int:
        """The width a line of resized width ``resized`` was read at, from its ``num_frames``:
        ``resized`` itself, or its stretched or squeezed width if it was read again."""
        first = -(-resized // downsample)
        if self.reread_density > 0 and num_frames > first:
            return self.stretched_width(resized)
        if self.reread_sparse > 0 and num_frames < first:
            return self.stretched_width(resized, self.reread_squeeze)
        return resized

    def _clip_width(self, w: float) -> int:
        return int(min(max(int(w), self.min_width), self.max_width))

    def padded_width(self, w: int) -> int:
        m = self.width_multiple
        return int(-(-w // m) * m)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LineGeometry":
        fields = cls.__dataclass_fields__
        cast = {"trim": bool, "margin_y": float, "margin_x": float, "deskew": bool,
                "reread_density": float, "reread_stretch": float, "reread_sparse": float,
                "reread_squeeze": float}
        return cls(**{k: cast.get(k, int)(v) for k, v in d.items() if k in fields})


DEFAULT_LINE_GEOMETRY = LineGeometry()
#: The fields of :class:`LineGeometry` that say how lines are read again, not how the network sees one.
REREAD_FIELDS = ("reread_density", "reread_stretch", "reread_sparse", "reread_squeeze")


#: Ink is darker than the paper level minus this share of the paper-to-darkest-pixel range.
INK_DEPTH = 0.25
#: A row or column with fewer pixels of ink than this is blank (one dark speck is noise).
INK_MIN_PIXELS = 2
#: Crops whose paper level and darkest pixel differ by less than this are not trimmed.
INK_MIN_CONTRAST = 24
#: Skews :func:`skew_slope` tries: 0 and +-0.25 .. +-6 degrees, nearest to level first (ties go
#: to the smaller skew).
DESKEW_DEGREES = (0.0,) + tuple(s * 0.25 * k for k in range(1, 25) for s in (1, -1))
#: Their slopes (dy/dx), as both paths use them.
_DESKEW_SLOPES = np.tan(np.radians(np.asarray(DESKEW_DEGREES, np.float64)))
#: A skew is kept only if it makes the row profile's sum of squares this much larger than level
#: (as the integer ratio 11 / 10, so both paths decide alike).
DESKEW_MIN_GAIN = (11, 10)
#: The slope is measured on the darkest pixel of k x k blocks, k = max(1, height // this).
DESKEW_ROWS = 32


# -- numpy path -----------------------------------------------------------------------------
def ink_extent(gray: np.ndarray) -> tuple[int, int, int, int] | None:
    """Rows ``y0:y1`` and columns ``x0:x1`` that hold ink in a 2-D uint8 line crop, or None
    (blank or flat crop).  Paper is the 90th percentile gray level of every other row and
    column, taken as the ``(9 (n-1)) // 10``-th smallest pixel so the TF twin finds the very
    same value."""
    g = np.asarray(gray, np.uint8)
    levels = _paper_and_ink(g)
    if levels is None:
        return None
    ink = (g < levels[1]).view(np.uint8)
    rows = np.flatnonzero(ink.sum(1, dtype=np.int32) >= INK_MIN_PIXELS)
    cols = np.flatnonzero(ink.sum(0, dtype=np.int32) >= INK_MIN_PIXELS)
    if len(rows) == 0 or len(cols) == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _paper_and_ink(g: np.ndarray) -> tuple[int, int] | None:
    """The paper level of a 2-D uint8 crop (see :func:`ink_extent`) and the level below which a
    pixel is ink; None for an empty or flat crop."""
    if g.size == 0:
        return None
    sub = g[::2, ::2].ravel()
    k = (9 * (sub.size - 1)) // 10
    paper = int(np.argmax(np.cumsum(np.bincount(sub, minlength=256)) >= k + 1))
    dark = int(g.min())
    if paper - dark < INK_MIN_CONTRAST:
        return None
    # g < t for a float t is g < ceil(t) for integer g
    return paper, int(np.ceil(np.float32(paper - INK_DEPTH * (paper - dark))))


def skew_slope(gray: np.ndarray) -> float:
    """The slope (dy/dx; + runs down to the right) of a trimmed 2-D uint8 line crop's writing,
    0.0 when level or unsure: of :data:`DESKEW_DEGREES`, the skew whose removal makes the ink's
    row profile sharpest (projection-profile deskew), kept if it beats level by
    :data:`DESKEW_MIN_GAIN`.  Integer sums throughout, so the TF twin picks the same slope."""
    g = np.asarray(gray, np.uint8)
    levels = _paper_and_ink(g)
    if levels is None or min(g.shape) < 8:
        return 0.0
    paper, thr = levels
    k = max(1, g.shape[0] // DESKEW_ROWS)
    hk, wk = g.shape[0] // k, g.shape[1] // k
    sub = g[:hk * k, :wk * k].reshape(hk, k, wk, k).min((1, 3))  # k x k blocks keep thin strokes
    ys, xs = np.nonzero(sub < thr)
    weight = paper - sub[ys, xs].astype(np.int32)
    h, w = sub.shape
    slopes = _DESKEW_SLOPES
    shift = np.rint(slopes[:, None] * (np.arange(w, dtype=np.float64) - (w - 1) / 2.0)).astype(np.int32)
    pad = int(np.abs(shift).max())
    n = h + 2 * pad
    rows = ys[None, :].astype(np.int32) - shift[:, xs] + pad + n * np.arange(len(slopes), dtype=np.int32)[:, None]
    profile = np.bincount(rows.ravel(), np.broadcast_to(weight, rows.shape).ravel(),
                          minlength=len(slopes) * n).astype(np.int64)
    score = (profile.reshape(len(slopes), n) ** 2).sum(1)
    best = int(np.argmax(score))
    if score[best] * DESKEW_MIN_GAIN[1] <= score[0] * DESKEW_MIN_GAIN[0]:
        return 0.0
    return float(slopes[best])


def shear_columns(gray: np.ndarray, slope: float) -> np.ndarray:
    """Shift each column of a 2-D uint8 crop up by ``slope`` x its distance from the centre
    column, so writing that runs at ``slope`` runs level; uncovered pixels become paper."""
    g = np.asarray(gray, np.uint8)
    h, w = g.shape
    shift = np.rint(slope * (np.arange(w, dtype=np.float64) - (w - 1) / 2.0)).astype(np.int64)
    pad = int(np.abs(shift).max())
    if pad == 0:
        return g
    levels = _paper_and_ink(g)
    big = np.full((h + 2 * pad, w), 255 if levels is None else levels[0], np.uint8)
    big[pad:pad + h] = g
    rows = np.arange(h + 2 * pad)[:, None] + shift[None, :]
    return np.take_along_axis(big, np.clip(rows, 0, h + 2 * pad - 1), 0)


def frame_line(gray: np.ndarray, geometry: LineGeometry = DEFAULT_LINE_GEOMETRY) -> np.ndarray:
    """A line crop as the recogniser reads it, before resizing: margins trimmed
    (:func:`trim_margins`) and, with ``geometry.deskew``, levelled and trimmed again, unless the
    levelled crop would be taller than the trimmed one.  That happens when the slope found is
    not the writing's (a curved or wavy baseline, a rule or a neighbour's strokes across the
    crop): on synthetic v2 validation lines soup P12 read 11.4 % CER levelling every line it
    found a slope in, 10.2 % levelling none, 10.55 % with this rule (300 lines), while lines
    rotated by 2 degrees kept their gain (17.4 unlevelled, 13.8 %)."""
    g = trim_margins(np.asarray(gray), geometry)
    if not (geometry.trim and geometry.deskew):
        return g
    slope = skew_slope(g)
    if slope == 0.0:
        return g
    levelled = trim_margins(shear_columns(g, slope), geometry)
    return levelled if levelled.shape[0] <= g.shape[0] else g


def level_line(gray: np.ndarray) -> np.ndarray:
    """A 2-D uint8 line crop (tight already, not trimmed here) with its writing levelled
    (:func:`skew_slope`, :func:`shear_columns`); the crop itself when level, unsure, or when
    levelling would make its ink taller (see :func:`frame_line`)."""
    g = np.asarray(gray)
    slope = skew_slope(g)
    if slope == 0.0:
        return g
    levelled = shear_columns(g, slope)
    before, after = ink_extent(g), ink_extent(levelled)
    taller = before is not None and after is not None and after[1] - after[0] > before[1] - before[0]
    return g if taller else levelled


def trim_margins(gray: np.ndarray, geometry: LineGeometry = DEFAULT_LINE_GEOMETRY) -> np.ndarray:
    """Cut a line crop's blank margins down to the geometry's share of the ink height."""
    e = ink_extent(gray) if geometry.trim else None
    if e is None:
        return gray
    y0, y1, x0, x1 = e
    hi = np.float32(y1 - y0)
    my = int(np.ceil(np.float32(geometry.margin_y) * hi))
    mx = int(np.ceil(np.float32(geometry.margin_x) * hi))
    return gray[max(0, y0 - my):y1 + my, max(0, x0 - mx):x1 + mx]


def resize_line(gray: np.ndarray, geometry: LineGeometry = DEFAULT_LINE_GEOMETRY, trim: bool = True) -> np.ndarray:
    """Frame a 2-D uint8 line crop (:func:`frame_line`, unless ``trim`` is False: a crop framed
    already) and resize it to the geometry's height (aspect ratio kept)."""
    import cv2

    if trim:
        gray = frame_line(gray, geometry)
    h, w = gray.shape[:2]
    tw = geometry.target_width(h, w)
    interp = cv2.INTER_AREA if h >= geometry.height else cv2.INTER_LINEAR
    return cv2.resize(gray, (tw, geometry.height), interpolation=interp)


def stretch_line(resized: np.ndarray, geometry: LineGeometry = DEFAULT_LINE_GEOMETRY,
                 factor: float | None = None) -> np.ndarray:
    """A resized 2-D uint8 line (``geometry.height`` tall) stretched (or squeezed, ``factor`` < 1)
    to :meth:`LineGeometry.stretched_width` columns (bilinear), for a second reading."""
    import cv2

    g = np.asarray(resized, np.uint8)
    return cv2.resize(g, (geometry.stretched_width(g.shape[1], factor), g.shape[0]),
                      interpolation=cv2.INTER_LINEAR)


def normalize(gray_uint8: np.ndarray) -> np.ndarray:
    """uint8 (paper=255) to float32 with ink positive in [0, 1] and paper 0."""
    return 1.0 - np.asarray(gray_uint8, np.float32) / 255.0


# -- TensorFlow path (tf.data and served graphs) ----------------------------------------------
def _tf_paper_and_ink(g):
    """TF twin of :func:`_paper_and_ink` on uint8 ``[h, w]``: (paper int32, ink threshold
    float32, whether the crop is neither empty nor flat)."""
    import tensorflow as tf

    sub = tf.cast(tf.reshape(g[::2, ::2], [-1]), tf.int32)
    hist = tf.math.bincount(sub, minlength=256, maxlength=256)
    k = (9 * (tf.size(sub) - 1)) // 10
    paper = tf.cast(tf.argmax(tf.cast(tf.cumsum(hist) >= k + 1, tf.int32)), tf.int32)
    dark = tf.reduce_min(tf.concat([tf.cast(tf.reshape(g, [-1]), tf.int32), [255]], 0))
    thr = tf.cast(paper, tf.float32) - INK_DEPTH * tf.cast(paper - dark, tf.float32)
    return paper, thr, (tf.size(g) > 0) & (paper - dark >= INK_MIN_CONTRAST)


def tf_trim_margins(image, geometry: LineGeometry = DEFAULT_LINE_GEOMETRY):
    """TF twin of :func:`trim_margins` (with :func:`ink_extent`) on uint8 ``[h, w, 1]``."""
    import tensorflow as tf

    if not geometry.trim:
        return image
    g = image[..., 0]
    h, w = tf.shape(g)[0], tf.shape(g)[1]
    paper, thr, valid = _tf_paper_and_ink(g)
    ink = tf.cast(tf.cast(g, tf.float32) < thr, tf.int32)
    rows = tf.reduce_sum(ink, 1) >= INK_MIN_PIXELS
    cols = tf.reduce_sum(ink, 0) >= INK_MIN_PIXELS
    ok = valid & tf.reduce_any(rows) & tf.reduce_any(cols)

    def first(m):
        return tf.cast(tf.argmax(tf.cast(m, tf.int32)), tf.int32)

    def cut():
        y0, y1 = first(rows), h - first(tf.reverse(rows, [0]))
        x0, x1 = first(cols), w - first(tf.reverse(cols, [0]))
        hi = tf.cast(y1 - y0, tf.float32)
        my = tf.cast(tf.math.ceil(tf.constant(geometry.margin_y, tf.float32) * hi), tf.int32)
        mx = tf.cast(tf.math.ceil(tf.constant(geometry.margin_x, tf.float32) * hi), tf.int32)
        t, l = tf.maximum(y0 - my, 0), tf.maximum(x0 - mx, 0)
        return image[t:tf.minimum(y1 + my, h), l:tf.minimum(x1 + mx, w)]

    return tf.cond(ok, cut, lambda: image)


def tf_skew_slope(g):
    """TF twin of :func:`skew_slope` on uint8 ``[h, w]``: float64 slope, 0.0 when level or unsure."""
    import tensorflow as tf

    paper, thr, valid = _tf_paper_and_ink(g)
    h, w = tf.shape(g)[0], tf.shape(g)[1]
    slopes = tf.constant(_DESKEW_SLOPES, tf.float64)
    n_slopes = len(DESKEW_DEGREES)

    def measure():
        k = tf.maximum(1, h // DESKEW_ROWS)
        hk, wk = h // k, w // k
        sub = tf.reduce_min(tf.reshape(g[:hk * k, :wk * k], tf.stack([hk, k, wk, k])), axis=[1, 3])
        at = tf.cast(tf.where(tf.cast(sub, tf.float32) < thr), tf.int32)
        ys, xs = at[:, 0], at[:, 1]
        weight = paper - tf.cast(tf.gather_nd(sub, at), tf.int32)
        hs, ws = tf.shape(sub)[0], tf.shape(sub)[1]
        x = tf.range(ws, dtype=tf.float64) - (tf.cast(ws, tf.float64) - 1.0) / 2.0
        shift = tf.cast(tf.round(slopes[:, None] * x[None, :]), tf.int32)
        pad = tf.reduce_max(tf.abs(shift))
        n = hs + 2 * pad
        rows = ys[None, :] - tf.gather(shift, xs, axis=1) + pad + n * tf.range(n_slopes)[:, None]
        profile = tf.math.unsorted_segment_sum(tf.broadcast_to(weight[None], tf.shape(rows)), rows,
                                               n_slopes * n)
        profile = tf.cast(tf.reshape(profile, [n_slopes, n]), tf.int64)
        score = tf.reduce_sum(profile * profile, 1)
        best = tf.argmax(score, output_type=tf.int32)
        keep = score[best] * DESKEW_MIN_GAIN[1] > score[0] * DESKEW_MIN_GAIN[0]
        return tf.where(keep, slopes[best], tf.constant(0.0, tf.float64))

    return tf.cond(valid & (h >= 8) & (w >= 8), measure, lambda: tf.constant(0.0, tf.float64))


def tf_shear_columns(image, slope):
    """TF twin of :func:`shear_columns` on uint8 ``[h, w, 1]`` and a float64 slope."""
    import tensorflow as tf

    g = image[..., 0]
    h, w = tf.shape(g)[0], tf.shape(g)[1]
    x = tf.range(w, dtype=tf.float64) - (tf.cast(w, tf.float64) - 1.0) / 2.0
    shift = tf.cast(tf.round(slope * x), tf.int32)
    pad = tf.reduce_max(tf.concat([tf.abs(shift), [0]], 0))
    paper, _, valid = _tf_paper_and_ink(g)
    big = tf.pad(g, [[pad, pad], [0, 0]], constant_values=tf.cast(tf.where(valid, paper, 255), tf.uint8))
    rows = tf.clip_by_value(tf.range(h + 2 * pad)[:, None] + shift[None, :], 0, h + 2 * pad - 1)
    out = tf.gather(tf.transpose(big), tf.transpose(rows), batch_dims=1)
    return tf.transpose(out)[..., None]


def tf_frame_line(image, geometry: LineGeometry = DEFAULT_LINE_GEOMETRY):
    """TF twin of :func:`frame_line` on uint8 ``[h, w, 1]``."""
    import tensorflow as tf

    image = tf_trim_margins(image, geometry)
    if not (geometry.trim and geometry.deskew):
        return image
    slope = tf_skew_slope(image[..., 0])

    def level():
        levelled = tf_trim_margins(tf_shear_columns(image, slope), geometry)
        return tf.cond(tf.shape(levelled)[0] <= tf.shape(image)[0], lambda: levelled, lambda: image)

    return tf.cond(tf.not_equal(slope, 0.0), level, lambda: image)


def tf_resize_line(image, geometry: LineGeometry = DEFAULT_LINE_GEOMETRY):
    """TF twin of :func:`resize_line`: uint8 ``[h, w, 1]`` -> (uint8 ``[H, w', 1]``, ``w'``)."""
    import tensorflow as tf

    image = tf_frame_line(image, geometry)
    shape = tf.shape(image)
    h = tf.cast(shape[0], tf.float32)
    w = tf.cast(shape[1], tf.float32)
    tw = tf.cast(tf.round(w * geometry.height / tf.maximum(h, 1.0)), tf.int32)
    tw = tf.clip_by_value(tw, geometry.min_width, geometry.max_width)
    method = tf.cond(h >= geometry.height, lambda: tf.constant("area"), lambda: tf.constant("bilinear"))
    img = tf.cast(image, tf.float32)
    resized = tf.cond(
        tf.equal(method, "area"),
        lambda: tf.image.resize(img, tf.stack([geometry.height, tw]), method="area"),
        lambda: tf.image.resize(img, tf.stack([geometry.height, tw]), method="bilinear"),
    )
    resized = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
    return resized, tw


def tf_stretch_lines(images, widths, geometry: LineGeometry = DEFAULT_LINE_GEOMETRY, factors=None):
    """TF twin of :func:`stretch_line` for a batch: uint8 ``[B, H, W]`` paper-padded lines, int32
    widths ``[B]`` and float factors ``[B]`` (default ``reread_stretch``) -> (uint8 ``[B, H, W']``
    paper-padded, int32 widths ``[B]``)."""
    import tensorflow as tf

    widths = tf.cast(widths, tf.int32)
    if factors is None:
        factors = tf.fill(tf.shape(widths), tf.constant(geometry.reread_stretch, tf.float64))
    new_w = tf.cast(tf.round(tf.cast(widths, tf.float64) * tf.cast(factors, tf.float64)), tf.int32)
    new_w = tf.clip_by_value(new_w, geometry.min_width, geometry.max_width)
    W = tf.maximum(tf.reduce_max(tf.concat([new_w, [1]], 0)), 1)

    def one(args):
        img, w, nw = args
        x = tf.image.resize(tf.cast(img[:, :w, None], tf.float32), tf.stack([tf.shape(img)[0], nw]),
                            method="bilinear")
        x = tf.cast(tf.clip_by_value(tf.round(x[..., 0]), 0, 255), tf.uint8)
        return tf.pad(x, [[0, 0], [0, W - nw]], constant_values=255)

    out = tf.map_fn(one, (images, widths, new_w), fn_output_signature=tf.TensorSpec([None, None], tf.uint8))
    return out, new_w


def tf_normalize(image_uint8):
    """TF twin of :func:`normalize`."""
    import tensorflow as tf

    return 1.0 - tf.cast(image_uint8, tf.float32) / 255.0


# -- boxes ------------------------------------------------------------------------------------
def xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, np.float32)
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:4]], axis=-1)


def xyxy_to_xywh(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, np.float32)
    return np.concatenate([b[..., :2], b[..., 2:4] - b[..., :2]], axis=-1)


def clip_boxes(b: np.ndarray, width: int, height: int) -> np.ndarray:
    b = np.asarray(b, np.float32).copy()
    b[..., 0::2] = np.clip(b[..., 0::2], 0, width)
    b[..., 1::2] = np.clip(b[..., 1::2], 0, height)
    return b


def union_box(boxes: np.ndarray) -> np.ndarray:
    """Smallest xyxy box holding all ``boxes`` (``[N, 4]``)."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.array([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()], np.float32)


def connected_groups(adj: np.ndarray) -> np.ndarray:
    """Group label (the smallest member's index) of each node of an undirected graph given by
    its boolean adjacency matrix ``adj`` (``[N, N]``): nodes joined by a path share a label."""
    if len(adj) == 0:
        return np.zeros((0,), np.int64)
    reach = np.asarray(adj, bool) | np.eye(len(adj), dtype=bool)
    while True:
        nxt = (reach.astype(np.float32) @ reach.astype(np.float32)) > 0
        if (nxt == reach).all():
            break
        reach = nxt
    return np.argmax(reach, axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes: ``[N, 4] x [M, 4] -> [N, M]``."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def crop(gray: np.ndarray, box: Sequence[float], pad: int = 0) -> np.ndarray:
    """Crop an xyxy box (plus ``pad`` pixels) from a page, clipped to the page."""
    h, w = gray.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0 = max(0, x0 - pad), max(0, y0 - pad)
    x1, y1 = min(w, x1 + pad), min(h, y1 + pad)
    if x1 <= x0 or y1 <= y0:
        return np.full((1, 1), 255, np.uint8)
    return gray[y0:y1, x0:x1]
