"""The text-line detector: a segmentation net predicting each line's central band.

The handwritten area (plus a margin) is cut from the page and resized to ``input_width``
(any height, padded to the network's stride); a small U-Net predicts at ``fcn.out_stride``
the *band* of every line: the central ``band_fraction`` of its box's height, over its whole
width.  Bands of neighbouring lines stay apart even where the line boxes overlap (GW's
boxes overlap by ~40 % of their height; a 0.4 band leaves a gap of ~20 %), so connected
components of the thresholded map are the lines.  Each component gives a box:

* x: the component's extent;
* thickness ``t`` = the component's probability mass / its width (sub-cell, the targets
  being anti-aliased), and the line height ``= extent_y + t * (1 / band_fraction - 1)``
  around the component's centre (a skewed band is taller than ``t``; the growth is added
  to its extent, so slightly skewed lines get their whole axis-aligned box);
* components much thinner than the page's median (slivers of lines cut by the crop's
  edge) are dropped;
* pieces of one line split at a word gap merge: bands overlapping vertically by at least
  ``merge_overlap`` of the thinner and at most ``merge_gap`` line heights apart.

Boxes come out in page pixels in reading order (top to bottom by centre).  The same
post-processing runs in TensorFlow (:func:`tf_line_boxes_from_mask`, connected components
by label propagation with pointer jumping) for the served graph.

Why segmentation rather than a keras-cv detector (YOLOV8Detector/RetinaNet): lines are
20-40 times wider than tall and their boxes overlap (GW), which box regression from anchors
or centres handles poorly, the band's components come out in reading order for free, and
it is cheap: measured on this CPU (one thread, a 384 x 384 input), this 21.5 K-parameter
net's forward pass took 28 ms, keras-cv's YOLOV8Detector with the ``xs`` backbone
(3.4 M parameters, before its box decoding and NMS) 94 ms.

>>> det = LineDetector.load("htr_tf/assets/models/lines")                   # doctest: +SKIP
>>> boxes = det.predict(page, region=area)        # [N, 4] xyxy page px, top to bottom  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from htr_tf.config import Config
from htr_tf.errors import ConfigError, DataError, ModelError
from htr_tf.geometry import connected_groups
from htr_tf.line_type import LineTypeConfig
from htr_tf.models.layout_common import (BUNDLE_FORMAT_VERSION, FCNConfig, area_resize, build_fcn,
                                         check_page, load_keras_model, normalize_page, read_bundle_meta,
                                         save_bundle, save_module, tf_area_resize,
                                         tf_connected_components)

__all__ = ["LineDetectorConfig", "build_line_detector", "LineDetector", "line_boxes_from_mask",
           "tf_line_boxes_from_mask", "tf_connected_components", "crop_box", "export_lines",
           "BUNDLE_KIND", "SIGNATURES"]

BUNDLE_KIND = "lines"
CONFIG_VERSION = 1
SIGNATURES = ("serving_default", "detect", "detect_page", "mask", "metadata")


@dataclass
class LineDetectorConfig(Config):
    """Architecture, input geometry and post-processing of the line detector."""

    version: int = CONFIG_VERSION
    input_width: int = 512
    #: Taller area crops are scaled down further so the input is at most this high.
    max_input_height: int = 2048
    fcn: FCNConfig = field(default_factory=lambda: FCNConfig(filters=(16, 24, 32, 48),
                                                             context_dilations=(2, 4), out_stride=2))
    #: The band's height as a fraction of its line box's height.
    band_fraction: float = 0.4
    threshold: float = 0.5
    #: Smallest component kept, in map cells (width and area).
    min_width: int = 3
    min_area: int = 6
    #: Components thinner than this times the page's median component thickness are dropped
    #: (slivers of lines cut by the crop's edge, specks); 0 keeps them.
    min_thickness_ratio: float = 0.5
    merge_overlap: float = 0.5
    merge_gap: float = 2.0
    #: Added around the area on every side before cropping, as a fraction of the area's width.
    region_margin: float = 0.02
    #: Printed-or-handwritten classifier for lines found outside the handwritten area
    #: (:mod:`htr_tf.line_type`, ``htr train line-type``); None: every such line is printed.
    line_type: LineTypeConfig | None = None

    def __post_init__(self) -> None:
        if isinstance(self.fcn, dict):
            self.fcn = FCNConfig.from_dict(self.fcn)
        if isinstance(self.line_type, dict):
            self.line_type = LineTypeConfig.from_dict(self.line_type)
        if self.version != CONFIG_VERSION:
            raise ConfigError(f"LineDetectorConfig: version {self.version} is not supported "
                              f"(this htr-tf reads {CONFIG_VERSION})")
        m = self.fcn.total_stride
        for name in ("input_width", "max_input_height"):
            v = int(getattr(self, name))
            if v < m or v % m:
                raise ConfigError(f"LineDetectorConfig: {name}={v} must be a positive multiple of the "
                                  f"network's stride {m}")
        if not 0.05 <= float(self.band_fraction) <= 1.0:
            raise ConfigError(f"LineDetectorConfig: band_fraction must be in [0.05, 1], got {self.band_fraction}")
        if not 0.0 < float(self.threshold) < 1.0:
            raise ConfigError(f"LineDetectorConfig: threshold must be in (0, 1), got {self.threshold}")
        if self.min_width < 1 or self.min_area < 1 or self.merge_gap < 0 or not 0 < self.merge_overlap <= 1:
            raise ConfigError("LineDetectorConfig: min_width, min_area >= 1, merge_gap >= 0 and "
                              "merge_overlap in (0, 1] are required")
        if not 0.0 <= float(self.min_thickness_ratio) <= 1.0:
            raise ConfigError("LineDetectorConfig: min_thickness_ratio must be in [0, 1]")
        if not 0.0 <= float(self.region_margin) < 1.0:
            raise ConfigError("LineDetectorConfig: region_margin must be in [0, 1)")

    @classmethod
    def tiny(cls) -> "LineDetectorConfig":
        """A few-thousand-parameter model for tests."""
        return cls(input_width=128, max_input_height=256,
                   fcn=FCNConfig(filters=(4, 8), context_dilations=(2,), out_stride=2))


def build_line_detector(config: LineDetectorConfig):
    """The Keras model: ``image`` ``[B, H, input_width, 1]`` (any ``H``, a multiple of the
    stride) -> ``mask`` band probabilities at ``fcn.out_stride``."""
    return build_fcn(config.fcn, (None, config.input_width), name="lines")


# -- geometry of the crop ------------------------------------------------------------------------------
def crop_box(page_shape: tuple[int, int], region: Sequence[float] | None, margin: float) -> tuple[int, int, int, int]:
    """Integer crop ``(x0, y0, x1, y1)``: ``region`` grown by ``margin`` x its width, clipped to
    the page; the whole page when ``region`` is None or degenerate."""
    h, w = page_shape
    if region is None:
        return 0, 0, w, h
    rx0, ry0, rx1, ry1 = (float(v) for v in region)
    m = margin * max(rx1 - rx0, 0.0)
    x0 = int(math.floor(max(0.0, rx0 - m)))
    y0 = int(math.floor(max(0.0, ry0 - m)))
    x1 = int(math.ceil(min(float(w), rx1 + m)))
    y1 = int(math.ceil(min(float(h), ry1 + m)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return 0, 0, w, h
    return x0, y0, x1, y1


def input_size(config: LineDetectorConfig, crop_h: int, crop_w: int) -> tuple[int, int, int]:
    """``(nh, nw, padded_h)``: the crop's resized size and the padded input height."""
    W, maxh, m = config.input_width, config.max_input_height, config.fcn.total_stride
    nh = int(round(crop_h * W / crop_w))
    nw = W
    if nh > maxh:
        nh, nw = maxh, max(1, min(W, int(round(crop_w * maxh / crop_h))))
    nh = max(nh, 1)
    return nh, nw, int(-(-nh // m) * m)


def _tf_input_size(config: LineDetectorConfig, crop_h, crop_w):
    import tensorflow as tf

    W, maxh, m = config.input_width, config.max_input_height, config.fcn.total_stride
    ch = tf.cast(crop_h, tf.float64)
    cw = tf.cast(crop_w, tf.float64)
    nh = tf.cast(tf.math.round(ch * W / cw), tf.int32)
    tall = nh > maxh
    nw = tf.where(tall, tf.clip_by_value(tf.cast(tf.math.round(cw * maxh / ch), tf.int32), 1, W), W)
    nh = tf.maximum(tf.where(tall, maxh, nh), 1)
    return nh, nw, (nh + m - 1) // m * m


# -- post-processing (numpy) -------------------------------------------------------------------------
def _merge_matrix(left, right, top, bottom, height, overlap: float, gap: float) -> np.ndarray:
    v = np.minimum(bottom[:, None], bottom[None, :]) - np.maximum(top[:, None], top[None, :])
    thin = np.minimum((bottom - top)[:, None], (bottom - top)[None, :])
    g = np.maximum(left[:, None], left[None, :]) - np.minimum(right[:, None], right[None, :])
    tall = np.maximum(height[:, None], height[None, :])
    return (v >= overlap * thin) & (g <= gap * tall)


def line_boxes_from_mask(prob: np.ndarray, config: LineDetectorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Band map ``[h, w]`` -> line boxes ``[N, 4]`` (xyxy, map cells) and scores ``[N]``, top to bottom."""
    import cv2

    p = np.asarray(prob, np.float32)
    m = (p >= config.threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    empty = np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    if n <= 1:
        return empty
    mass = np.bincount(labels.ravel(), weights=p.ravel(), minlength=n)[1:].astype(np.float32)
    left, top, width, height, area = (stats[1:, i].astype(np.float32) for i in range(5))
    keep = (width >= config.min_width) & (area >= config.min_area)
    if keep.any() and config.min_thickness_ratio > 0:
        t = mass / width
        median = np.sort(t[keep])[int(keep.sum()) // 2]
        keep &= t >= config.min_thickness_ratio * median
    if not keep.any():
        return empty
    left, top, width, height, area, mass = (a[keep] for a in (left, top, width, height, area, mass))
    right, bottom = left + width, top + height
    grow = 1.0 / config.band_fraction - 1.0
    line_h = height + mass / width * grow
    group = connected_groups(_merge_matrix(left, right, top, bottom, line_h, config.merge_overlap, config.merge_gap))
    _, gid = np.unique(group, return_inverse=True)
    k = int(gid.max()) + 1
    g_left = np.full(k, np.inf, np.float32)
    g_top = np.full(k, np.inf, np.float32)
    g_right = np.full(k, -np.inf, np.float32)
    g_bottom = np.full(k, -np.inf, np.float32)
    np.minimum.at(g_left, gid, left)
    np.minimum.at(g_top, gid, top)
    np.maximum.at(g_right, gid, right)
    np.maximum.at(g_bottom, gid, bottom)
    g_mass = np.bincount(gid, weights=mass, minlength=k).astype(np.float32)
    g_width = np.bincount(gid, weights=width, minlength=k).astype(np.float32)
    g_area = np.bincount(gid, weights=area, minlength=k).astype(np.float32)
    hgt = (g_bottom - g_top) + g_mass / g_width * grow
    cy = (g_top + g_bottom) / 2
    boxes = np.stack([g_left, cy - hgt / 2, g_right, cy + hgt / 2], axis=1).astype(np.float32)
    scores = (g_mass / g_area).astype(np.float32)
    order = np.lexsort((boxes[:, 0], cy))
    return boxes[order], scores[order]


# -- post-processing (TensorFlow) ----------------------------------------------------------------------
def tf_line_boxes_from_mask(prob, config: LineDetectorConfig):
    """TF twin of :func:`line_boxes_from_mask`: ``[h, w]`` -> (boxes ``[N, 4]``, scores ``[N]``)."""
    import tensorflow as tf

    p = tf.cast(prob, tf.float32)
    w = tf.shape(p)[1]
    mask = p >= config.threshold
    labels = tf_connected_components(mask)
    where = tf.where(mask)
    ys = tf.cast(where[:, 0], tf.float32)
    xs = tf.cast(where[:, 1], tf.float32)
    lab = tf.gather_nd(labels, where)
    pv = tf.gather_nd(p, where)
    _, seg = tf.unique(lab)
    n = tf.reduce_max(tf.concat([seg, [-1]], 0)) + 1
    left = tf.math.unsorted_segment_min(xs, seg, n)
    right = tf.math.unsorted_segment_max(xs, seg, n) + 1
    top = tf.math.unsorted_segment_min(ys, seg, n)
    bottom = tf.math.unsorted_segment_max(ys, seg, n) + 1
    area = tf.math.unsorted_segment_sum(tf.ones_like(xs), seg, n)
    mass = tf.math.unsorted_segment_sum(pv, seg, n)
    width = right - left
    keep = tf.logical_and(width >= config.min_width, area >= config.min_area)
    if config.min_thickness_ratio > 0:
        t = mass / width
        kept = tf.sort(tf.boolean_mask(t, keep))
        median = tf.gather(tf.concat([kept, [0.0]], 0), tf.size(kept) // 2)
        keep = tf.logical_and(keep, t >= config.min_thickness_ratio * median)
    left, right, top, bottom, width, area, mass = (tf.boolean_mask(a, keep) for a in
                                                   (left, right, top, bottom, width, area, mass))
    grow = 1.0 / config.band_fraction - 1.0
    line_h = (bottom - top) + mass / width * grow
    v = tf.minimum(bottom[:, None], bottom[None, :]) - tf.maximum(top[:, None], top[None, :])
    thin = tf.minimum((bottom - top)[:, None], (bottom - top)[None, :])
    g = tf.maximum(left[:, None], left[None, :]) - tf.minimum(right[:, None], right[None, :])
    tall = tf.maximum(line_h[:, None], line_h[None, :])
    k = tf.shape(left)[0]
    adj = tf.logical_or(tf.logical_and(v >= config.merge_overlap * thin, g <= config.merge_gap * tall),
                        tf.eye(k, dtype=tf.bool))

    def step(reach, _):
        r = tf.cast(reach, tf.float32)
        nxt = tf.matmul(r, r) > 0
        return nxt, tf.reduce_any(tf.not_equal(nxt, reach))

    reach, _ = tf.while_loop(lambda r, c: c, step, (adj, tf.constant(True)), maximum_iterations=k + 1)
    group = tf.reduce_min(tf.where(reach, tf.range(k)[None, :], k), axis=1)  # smallest member
    _, gid = tf.unique(group)
    gk = tf.reduce_max(tf.concat([gid, [-1]], 0)) + 1
    g_left = tf.math.unsorted_segment_min(left, gid, gk)
    g_right = tf.math.unsorted_segment_max(right, gid, gk)
    g_top = tf.math.unsorted_segment_min(top, gid, gk)
    g_bottom = tf.math.unsorted_segment_max(bottom, gid, gk)
    g_mass = tf.math.unsorted_segment_sum(mass, gid, gk)
    g_width = tf.math.unsorted_segment_sum(width, gid, gk)
    g_area = tf.math.unsorted_segment_sum(area, gid, gk)
    hgt = (g_bottom - g_top) + g_mass / g_width * grow
    cy = (g_top + g_bottom) / 2
    boxes = tf.stack([g_left, cy - hgt / 2, g_right, cy + hgt / 2], axis=1)
    scores = g_mass / g_area
    # reading order: by centre, then left edge (cy is a multiple of 0.5, x < w: one sortable key)
    key = cy * 2.0 * tf.cast(w + 1, tf.float32) + g_left
    order = tf.argsort(key, stable=True)
    return tf.reshape(tf.gather(boxes, order), [-1, 4]), tf.gather(scores, order)


# -- the bundle ----------------------------------------------------------------------------------------
@dataclass
class LineDetector:
    """A line detector bundle: the Keras model, its config and ``info`` (provenance, metrics).

    A bundle directory holds ``model.keras`` and ``htr.json`` (kind ``lines``, format
    version, config, input geometry, info).
    """

    model: Any
    config: LineDetectorConfig
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._fn = None

    @classmethod
    def create(cls, config: LineDetectorConfig, info: dict | None = None) -> "LineDetector":
        """A freshly initialised detector."""
        return cls(build_line_detector(config), config, dict(info or {}))

    # -- persistence -------------------------------------------------------------------------------
    def metadata(self) -> dict:
        c = self.config
        return {"kind": BUNDLE_KIND, "format_version": BUNDLE_FORMAT_VERSION, "config": c.to_dict(),
                "input": {"width": c.input_width, "max_height": c.max_input_height,
                          "height_multiple": c.fcn.total_stride, "out_stride": c.fcn.out_stride,
                          "region_margin": c.region_margin,
                          "resize": "area crop to input width (aspect kept), pad bottom/right with 255",
                          "normalization": "1 - gray / 255"},
                "info": self.info}

    def save(self, path: str | os.PathLike) -> None:
        """Write the bundle directory atomically."""
        save_bundle(path, self.model, self.metadata())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LineDetector":
        """Load a bundle; :class:`ModelError` naming ``path`` when missing, corrupt or incompatible."""
        meta = read_bundle_meta(path, BUNDLE_KIND)
        try:
            config = LineDetectorConfig.from_dict(meta["config"])
        except (KeyError, TypeError, ValueError, ConfigError) as e:
            raise ModelError(f"{path}: bad bundle metadata: {e}") from None
        model = load_keras_model(path)
        if tuple(model.input_shape) != (None, None, config.input_width, 1):
            raise ModelError(f"{path}: model input {model.input_shape} does not match the config "
                             f"(width {config.input_width})")
        return cls(model, config, dict(meta.get("info") or {}))

    # -- inference -----------------------------------------------------------------------------------
    def preprocess(self, page: np.ndarray, region: Sequence[float] | None = None
                   ) -> tuple[np.ndarray, tuple[int, int], tuple[float, float]]:
        """Page (+ area) -> (float32 ``[Hp, input_width]`` input, crop origin, ``(sx, sy)``)."""
        x0, y0, x1, y1 = crop_box(page.shape[:2], region, self.config.region_margin)
        crop = page[y0:y1, x0:x1]
        nh, nw, hp = input_size(self.config, crop.shape[0], crop.shape[1])
        small, scale = area_resize(crop, nh, nw)
        canvas = np.full((hp, self.config.input_width), 255, np.uint8)
        canvas[:nh, :nw] = small
        return normalize_page(canvas), (x0, y0), scale

    def mask(self, inputs: np.ndarray) -> np.ndarray:
        """Band probabilities ``[h, w]`` for one preprocessed input ``[Hp, input_width]``."""
        import tensorflow as tf

        if self._fn is None:
            model = self.model

            @tf.function(input_signature=[tf.TensorSpec([1, None, self.config.input_width, 1], tf.float32)],
                         autograph=False)
            def fn(x):
                return model(x, training=False)["mask"]

            self._fn = fn
        return self._fn(tf.constant(np.asarray(inputs, np.float32)[None, :, :, None])).numpy()[0, :, :, 0]

    def postprocess(self, prob: np.ndarray, origin: tuple[int, int], scale: tuple[float, float],
                    page_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Map -> (boxes ``[N, 4]`` page px, scores ``[N]``) in reading order."""
        boxes, scores = line_boxes_from_mask(prob, self.config)
        s = self.config.fcn.out_stride
        sx, sy = scale
        boxes = boxes * np.array([s / sx, s / sy, s / sx, s / sy], np.float32)
        boxes = boxes + np.array([origin[0], origin[1], origin[0], origin[1]], np.float32)
        h, w = page_shape
        boxes = np.clip(boxes, 0, np.array([w, h, w, h], np.float32)).astype(np.float32)
        return boxes.reshape(-1, 4), scores

    def detect(self, page: np.ndarray, region: Sequence[float] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Lines of a gray uint8 page inside ``region`` (xyxy page px; None: the whole page):
        (boxes ``[N, 4]`` xyxy page px in reading order, scores ``[N]`` in [0, 1])."""
        page = check_page(page)
        if region is not None:
            region = np.asarray(region, np.float32).reshape(-1)
            if region.shape != (4,) or not np.isfinite(region).all():
                raise DataError(f"region must be 4 finite numbers (xyxy page px), got {region.tolist()}")
        x, origin, scale = self.preprocess(page, region)
        return self.postprocess(self.mask(x), origin, scale, page.shape[:2])

    def predict(self, page: np.ndarray, region: Sequence[float] | None = None) -> np.ndarray:
        """Line boxes ``[N, 4]`` (xyxy page px, top to bottom) of a gray uint8 page inside ``region``."""
        return self.detect(page, region)[0]

    def count_params(self) -> int:
        return int(self.model.count_params())


# -- export -----------------------------------------------------------------------------------------
def export_lines(detector: LineDetector, out_dir: str | os.PathLike) -> Path:
    """Export a SavedModel for TF Serving (written beside ``out_dir``, renamed into place).

    Signatures: ``detect`` (also ``serving_default``): ``image`` uint8 ``[H, W]`` (any size,
    gray), ``region`` float32 ``[4]`` (the handwritten area, xyxy page px) -> ``boxes``
    float32 ``[N, 4]`` xyxy page px in reading order, ``scores`` float32 ``[N]``;
    ``detect_page``: ``image`` only (the whole page is the area), both for clients that send
    pages; ``mask``: ``images`` uint8 ``[B, Hp, input_width]`` (area crops resized by
    :meth:`LineDetector.preprocess`, paper 255) -> ``mask`` float32 ``[B, h, w]``: the network
    alone, so a client that resizes and post-processes with this module's numpy code (htr-tf's
    gRPC backend) gets the in-process boxes; ``metadata``: ``json``.
    """
    import tensorflow as tf

    c = detector.config
    meta_json = json.dumps(detector.metadata(), indent=2, ensure_ascii=False)
    W, s = c.input_width, c.fcn.out_stride

    class LinesModule(tf.Module):
        def __init__(self, asset: Path) -> None:
            super().__init__(name="htr_lines")
            self.model = detector.model
            self.htr_json = tf.saved_model.Asset(str(asset))

        def _run(self, image, region):
            h = tf.shape(image)[0]
            w = tf.shape(image)[1]
            hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
            region = tf.cast(region, tf.float32)
            m = c.region_margin * tf.maximum(region[2] - region[0], 0.0)
            x0 = tf.cast(tf.floor(tf.maximum(0.0, region[0] - m)), tf.int32)
            y0 = tf.cast(tf.floor(tf.maximum(0.0, region[1] - m)), tf.int32)
            x1 = tf.cast(tf.math.ceil(tf.minimum(wf, region[2] + m)), tf.int32)
            y1 = tf.cast(tf.math.ceil(tf.minimum(hf, region[3] + m)), tf.int32)
            bad = tf.logical_or(x1 - x0 < 2, y1 - y0 < 2)
            x0, y0 = tf.where(bad, 0, x0), tf.where(bad, 0, y0)
            x1, y1 = tf.where(bad, w, x1), tf.where(bad, h, y1)
            crop = image[y0:y1, x0:x1]
            nh, nw, hp = _tf_input_size(c, y1 - y0, x1 - x0)
            small, scale = tf_area_resize(crop, nh, nw)
            canvas = 255 - tf.pad(255 - small, [[0, hp - nh], [0, W - nw]])
            x = 1.0 - tf.cast(canvas, tf.float32) / 255.0
            prob = self.model(x[None, :, :, None], training=False)["mask"][0, :, :, 0]
            boxes, scores = tf_line_boxes_from_mask(prob, c)
            mul = tf.stack([s / scale[0], s / scale[1], s / scale[0], s / scale[1]])
            add = tf.cast(tf.stack([x0, y0, x0, y0]), tf.float32)
            boxes = tf.clip_by_value(boxes * mul + add, 0.0, tf.stack([wf, hf, wf, hf]))
            return {"boxes": boxes, "scores": scores}

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.uint8, name="image"),
                                      tf.TensorSpec([4], tf.float32, name="region")])
        def detect(self, image, region):
            return self._run(image, region)

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.uint8, name="image")])
        def detect_page(self, image):
            shape = tf.cast(tf.shape(image), tf.float32)
            return self._run(image, tf.stack([0.0, 0.0, shape[1], shape[0]]))

        @tf.function(input_signature=[tf.TensorSpec([None, None, W], tf.uint8, name="images")])
        def mask(self, images):
            x = 1.0 - tf.cast(images, tf.float32) / 255.0          # normalize_page, bit for bit
            return {"mask": self.model(x[..., None], training=False)["mask"][..., 0]}

        @tf.function(input_signature=[])
        def metadata(self):
            return {"json": tf.constant(meta_json)}

    return save_module(LinesModule, meta_json, out_dir,
                       lambda mod: {"serving_default": mod.detect.get_concrete_function(),
                                    "detect": mod.detect.get_concrete_function(),
                                    "detect_page": mod.detect_page.get_concrete_function(),
                                    "mask": mod.mask.get_concrete_function(),
                                    "metadata": mod.metadata.get_concrete_function()})
