"""Image geometry and normalisation: one place for every resize, pad and box rule.

A line image is gray uint8, dark ink on light paper.  The recogniser sees it with blank
margins beyond a small fraction of the ink height cut off (loose crops, e.g. a line cut with
generous padding, read far worse otherwise: on the validation splits, blank paper of half the
line height above and below took copiste box crops from 13.8 % to 32.9 % CER and GW from
7.7 % to 42.9 %), resized to ``LineGeometry.height`` keeping the aspect ratio (never squashed,
unless wider than ``max_width``), normalised to float ``1 - x/255`` so ink is positive and
zero padding is blank paper.  Both the numpy path (pipelines, TFLite) and the TF path
(tf.data, served graphs) use area interpolation so they agree to within rounding.

Boxes are ``xyxy`` in page pixels (x0, y0, x1, y1) unless a name says otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
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

    def target_width(self, h: int, w: int) -> int:
        """Width after resizing an ``h x w`` crop to ``height`` with its aspect ratio kept."""
        tw = int(round(w * self.height / max(h, 1)))
        return int(min(max(tw, self.min_width), self.max_width))

    def padded_width(self, w: int) -> int:
        m = self.width_multiple
        return int(-(-w // m) * m)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LineGeometry":
        fields = cls.__dataclass_fields__
        cast = {"trim": bool, "margin_y": float, "margin_x": float}
        return cls(**{k: cast.get(k, int)(v) for k, v in d.items() if k in fields})


DEFAULT_LINE_GEOMETRY = LineGeometry()


#: Ink is darker than the paper level minus this share of the paper-to-darkest-pixel range.
INK_DEPTH = 0.25
#: A row or column with fewer pixels of ink than this is blank (one dark speck is noise).
INK_MIN_PIXELS = 2
#: Crops whose paper level and darkest pixel differ by less than this are not trimmed.
INK_MIN_CONTRAST = 24


# -- numpy path -----------------------------------------------------------------------------
def ink_extent(gray: np.ndarray) -> tuple[int, int, int, int] | None:
    """Rows ``y0:y1`` and columns ``x0:x1`` that hold ink in a 2-D uint8 line crop, or None
    (blank or flat crop).  Paper is the 90th percentile gray level of every other row and
    column, taken as the ``(9 (n-1)) // 10``-th smallest pixel so the TF twin finds the very
    same value."""
    g = np.asarray(gray, np.uint8)
    if g.size == 0:
        return None
    sub = g[::2, ::2].ravel()
    k = (9 * (sub.size - 1)) // 10
    paper = int(np.argmax(np.cumsum(np.bincount(sub, minlength=256)) >= k + 1))
    dark = int(g.min())
    if paper - dark < INK_MIN_CONTRAST:
        return None
    # g < t for a float t is g < ceil(t) for integer g
    ink = (g < int(np.ceil(np.float32(paper - INK_DEPTH * (paper - dark))))).view(np.uint8)
    rows = np.flatnonzero(ink.sum(1, dtype=np.int32) >= INK_MIN_PIXELS)
    cols = np.flatnonzero(ink.sum(0, dtype=np.int32) >= INK_MIN_PIXELS)
    if len(rows) == 0 or len(cols) == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


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
    """Trim a 2-D uint8 line crop's margins (unless ``trim`` is False: a crop framed already)
    and resize it to the geometry's height (aspect ratio kept)."""
    import cv2

    if trim:
        gray = trim_margins(np.asarray(gray), geometry)
    h, w = gray.shape[:2]
    tw = geometry.target_width(h, w)
    interp = cv2.INTER_AREA if h >= geometry.height else cv2.INTER_LINEAR
    return cv2.resize(gray, (tw, geometry.height), interpolation=interp)


def normalize(gray_uint8: np.ndarray) -> np.ndarray:
    """uint8 (paper=255) to float32 with ink positive in [0, 1] and paper 0."""
    return 1.0 - np.asarray(gray_uint8, np.float32) / 255.0


# -- TensorFlow path (tf.data and served graphs) ----------------------------------------------
def tf_trim_margins(image, geometry: LineGeometry = DEFAULT_LINE_GEOMETRY):
    """TF twin of :func:`trim_margins` (with :func:`ink_extent`) on uint8 ``[h, w, 1]``."""
    import tensorflow as tf

    if not geometry.trim:
        return image
    g = image[..., 0]
    h, w = tf.shape(g)[0], tf.shape(g)[1]
    n = h * w
    sub = tf.cast(tf.reshape(g[::2, ::2], [-1]), tf.int32)
    hist = tf.math.bincount(sub, minlength=256, maxlength=256)
    k = (9 * (tf.size(sub) - 1)) // 10
    paper = tf.cast(tf.argmax(tf.cast(tf.cumsum(hist) >= k + 1, tf.int32)), tf.int32)
    dark = tf.reduce_min(tf.concat([tf.cast(tf.reshape(g, [-1]), tf.int32), [255]], 0))
    thr = tf.cast(paper, tf.float32) - INK_DEPTH * tf.cast(paper - dark, tf.float32)
    ink = tf.cast(tf.cast(g, tf.float32) < thr, tf.int32)
    rows = tf.reduce_sum(ink, 1) >= INK_MIN_PIXELS
    cols = tf.reduce_sum(ink, 0) >= INK_MIN_PIXELS
    ok = (n > 0) & (paper - dark >= INK_MIN_CONTRAST) & tf.reduce_any(rows) & tf.reduce_any(cols)

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


def tf_resize_line(image, geometry: LineGeometry = DEFAULT_LINE_GEOMETRY):
    """TF twin of :func:`resize_line`: uint8 ``[h, w, 1]`` -> (uint8 ``[H, w', 1]``, ``w'``)."""
    import tensorflow as tf

    image = tf_trim_margins(image, geometry)
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
