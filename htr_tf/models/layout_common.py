"""Shared parts of the layout models: the small U-Net, page resizing, soft box masks.

Both layout models are fully convolutional networks (:func:`build_fcn`) predicting one
probability map at ``out_stride`` of their input; everything around them (resizing a page,
turning a map into boxes) is numpy/cv2 here and has a TensorFlow twin for served graphs.

Coordinates: a map pixel ``(i, j)`` covers input pixels ``[j*s, (j+1)*s) x [i*s, (i+1)*s)``
for stride ``s``; boxes are xyxy with continuous coordinates (pixel ``j`` spans ``[j, j+1)``).

Bundles (``save_bundle``, ``read_bundle_meta``, ``load_keras_model``, ``save_module``) live in
:mod:`htr_tf.bundle`; their names are re-exported here for the layout models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from htr_tf.bundle import (BUNDLE_FORMAT_VERSION, META_FILE, MODEL_FILE, load_keras_model, read_bundle_meta,
                           save_bundle, save_module)
from htr_tf.config import Config
from htr_tf.errors import ConfigError, DataError

__all__ = ["FCNConfig", "build_fcn", "normalize_page", "area_resize", "tf_area_resize", "fit_size",
           "resize_fit", "tf_resize_fit",
           "soft_box_mask", "save_bundle", "read_bundle_meta", "load_keras_model", "check_page",
           "save_module", "tf_max_filter", "tf_connected_components", "MODEL_FILE", "META_FILE",
           "BUNDLE_FORMAT_VERSION"]

FCN_CONFIG_VERSION = 1


# -- the network --------------------------------------------------------------------------------
@dataclass
class FCNConfig(Config):
    """A small U-Net: encoder levels at strides 2, 4, 8, ... (one per ``filters`` entry).

    Level 0 is one plain strided 3x3 conv (its input has one channel; the finest level is
    the costliest, so it stays thin); level ``i > 0`` is a strided 3x3 conv (depthwise-
    separable when ``separable``) then ``convs_per_level`` more, all with ``filters[i]``
    channels.  The deepest level adds one conv per ``context_dilations`` entry (dilated,
    for a wide receptive field).  The decoder goes back to ``out_stride`` (1, 2, 4 ...) by
    nearest-neighbour upsampling, concatenating each encoder level's features before a
    conv, and a 1x1 conv gives the probability map (sigmoid, float32).
    """

    version: int = FCN_CONFIG_VERSION
    filters: tuple[int, ...] = (16, 24, 32, 48)
    convs_per_level: int = 1
    context_dilations: tuple[int, ...] = (2, 4)
    out_stride: int = 2
    #: Channels of the full-resolution stem used when ``out_stride`` is 1.
    stem_filters: int = 8
    #: Depthwise-separable convolutions (fewer multiply-adds).
    separable: bool = True
    #: Batch-norm momentum: 0.9 lets the moving statistics follow within the few hundred
    #: steps a CPU run makes (Keras' 0.99 leaves them near their initial values).
    bn_momentum: float = 0.9

    def __post_init__(self) -> None:
        self.filters = tuple(int(f) for f in self.filters)
        self.context_dilations = tuple(int(d) for d in self.context_dilations)
        if self.version != FCN_CONFIG_VERSION:
            raise ConfigError(f"FCNConfig: version {self.version} is not supported (this htr-tf reads "
                              f"{FCN_CONFIG_VERSION})")
        if not 2 <= len(self.filters) <= 6 or min(self.filters) < 1:
            raise ConfigError(f"FCNConfig: filters must be 2 to 6 positive channel counts, got {self.filters}")
        if not 0.0 <= float(self.bn_momentum) < 1.0:
            raise ConfigError(f"FCNConfig: bn_momentum must be in [0, 1), got {self.bn_momentum}")
        if self.convs_per_level < 1 or self.stem_filters < 1 or any(d < 1 for d in self.context_dilations):
            raise ConfigError("FCNConfig: convs_per_level, stem_filters and context_dilations must be >= 1")
        strides = [2 ** k for k in range(len(self.filters) + 1)]
        if self.out_stride not in strides[:-1]:
            raise ConfigError(f"FCNConfig: out_stride must be one of {strides[:-1]} for {len(self.filters)} "
                              f"levels, got {self.out_stride}")

    @property
    def total_stride(self) -> int:
        """Input sizes must be multiples of this (the deepest level's stride)."""
        return 2 ** len(self.filters)


def build_fcn(config: FCNConfig, input_shape: tuple[Any, Any], name: str = "fcn"):
    """The functional U-Net: input ``image`` float32 ``[B, H, W, 1]`` (ink positive, paper 0),
    output ``mask`` float32 ``[B, H/s, W/s, 1]`` probabilities, ``s = config.out_stride``.

    ``input_shape`` is ``(H, W)`` with ``None`` for a dynamic size; sizes must be multiples
    of ``config.total_stride``.
    """
    import keras

    H, W = input_shape
    for n, v in (("height", H), ("width", W)):
        if v is not None and v % config.total_stride:
            raise ConfigError(f"input {n} {v} is not a multiple of the network's stride {config.total_stride}")
    image = keras.Input(shape=(H, W, 1), dtype="float32", name="image")

    def conv(x, filters: int, stride: int = 1, dilation: int = 1, separable: bool = True, tag: str = ""):
        layer = keras.layers.SeparableConv2D if separable else keras.layers.Conv2D
        x = layer(filters, 3, strides=stride, dilation_rate=dilation, padding="same", use_bias=False,
                  name=f"{tag}_conv")(x)
        x = keras.layers.BatchNormalization(momentum=config.bn_momentum, name=f"{tag}_bn")(x)
        return keras.layers.ReLU(name=f"{tag}_relu")(x)

    skips: dict[int, Any] = {}
    if config.out_stride == 1:
        skips[1] = conv(image, config.stem_filters, separable=False, tag="stem")
    x = image
    n = len(config.filters)
    for level, f in enumerate(config.filters):
        stride = 2 ** (level + 1)
        x = conv(x, f, stride=2, separable=config.separable and level > 0, tag=f"enc{stride}_down")
        for k in range(config.convs_per_level if level > 0 else 0):
            x = conv(x, f, separable=config.separable, tag=f"enc{stride}_{k + 1}")
        if level == n - 1:
            for d in config.context_dilations:
                x = conv(x, f, dilation=d, separable=config.separable, tag=f"ctx_d{d}")
        else:
            skips[stride] = x
    stride = 2 ** n
    while stride > config.out_stride:
        stride //= 2
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"up{stride}")(x)
        x = keras.layers.Concatenate(name=f"skip{stride}")([x, skips[stride]])
        f = config.filters[int(math.log2(stride)) - 1] if stride > 1 else config.stem_filters
        x = conv(x, f, separable=config.separable, tag=f"dec{stride}")
    logits = keras.layers.Conv2D(1, 1, dtype="float32", name="logits")(x)
    mask = keras.layers.Activation("sigmoid", dtype="float32", name="mask")(logits)
    return keras.Model(image, {"mask": mask}, name=name)


# -- pages ----------------------------------------------------------------------------------------
def check_page(page: Any, where: str = "page") -> np.ndarray:
    """A 2-D uint8 gray page (``[H, W]`` or ``[H, W, 1]``), or a :class:`DataError`."""
    a = np.asarray(page)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.dtype != np.uint8 or a.ndim != 2:
        raise DataError(f"{where}: expected a 2-D uint8 gray image, got {a.dtype} {list(a.shape)} "
                        f"(read files with htr_tf.fileio.read_image)")
    if a.shape[0] < 2 or a.shape[1] < 2:
        raise DataError(f"{where}: image is too small ({a.shape[1]}x{a.shape[0]})")
    return a


def normalize_page(gray: np.ndarray) -> np.ndarray:
    """uint8 paper=255 -> float32 ink positive (``1 - x/255``), as for lines."""
    return 1.0 - np.asarray(gray, np.float32) / 255.0


def area_resize(gray: np.ndarray, out_h: int, out_w: int) -> tuple[np.ndarray, tuple[float, float]]:
    """Resize a uint8 image to ``out_h x out_w``: returns it and ``(sx, sy)``, output px per input px.

    Shrinking is area averaging in two steps, fast at any size: an integer ``k x k`` box
    average (the image cropped to multiples of ``k``; at most ``k - 1`` edge pixels are
    dropped, accounted for in the scales) then OpenCV's area resize by less than 2.
    Enlarging is bilinear.  :func:`tf_area_resize` is the TF twin.
    """
    import cv2

    h, w = gray.shape[:2]
    k = max(1, min(h // out_h, w // out_w))
    hc, wc = (h // k) * k, (w // k) * k
    g = gray
    if k >= 2:
        g = cv2.resize(gray[:hc, :wc], (wc // k, hc // k), interpolation=cv2.INTER_AREA)
    if g.shape[0] != out_h or g.shape[1] != out_w:
        shrink = out_h <= g.shape[0] and out_w <= g.shape[1]
        g = cv2.resize(g, (out_w, out_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return g, (out_w / wc, out_h / hc)


def tf_area_resize(image, out_h, out_w):
    """TF twin of :func:`area_resize` for a uint8 ``[h, w]`` tensor (sizes may be tensors)."""
    import tensorflow as tf

    h, w = tf.shape(image)[0], tf.shape(image)[1]
    out_h, out_w = tf.cast(out_h, tf.int32), tf.cast(out_w, tf.int32)
    k = tf.maximum(1, tf.minimum(h // out_h, w // out_w))
    hk, wk = h // k, w // k
    x = tf.cast(image[: hk * k, : wk * k], tf.float32)
    x = tf.reduce_mean(tf.reshape(x, tf.stack([hk, k, wk, k])), axis=[1, 3])
    x = tf.round(x)[:, :, None]
    size = tf.stack([out_h, out_w])
    shrink = tf.logical_and(out_h <= hk, out_w <= wk)
    same = tf.logical_and(tf.equal(out_h, hk), tf.equal(out_w, wk))
    y = tf.cond(same, lambda: x,
                lambda: tf.cond(shrink, lambda: tf.image.resize(x, size, method="area"),
                                lambda: tf.image.resize(x, size, method="bilinear")))
    y = tf.cast(tf.clip_by_value(tf.round(y), 0, 255), tf.uint8)[:, :, 0]
    scale = tf.stack([tf.cast(out_w, tf.float32) / tf.cast(wk * k, tf.float32),
                      tf.cast(out_h, tf.float32) / tf.cast(hk * k, tf.float32)])
    return y, scale


def fit_size(h: int, w: int, height: int, width: int) -> tuple[int, int]:
    """Size of an ``h x w`` image scaled to fit ``height x width`` with its aspect ratio kept."""
    scale = min(height / h, width / w)
    return int(min(max(round(h * scale), 1), height)), int(min(max(round(w * scale), 1), width))


def resize_fit(gray: np.ndarray, height: int, width: int) -> tuple[np.ndarray, tuple[float, float]]:
    """Resize keeping the aspect ratio to fit ``height x width`` (:func:`area_resize`) and pad
    with paper (255) right and bottom; returns the canvas and ``(sx, sy)`` canvas px per page px."""
    nh, nw = fit_size(gray.shape[0], gray.shape[1], height, width)
    small, scale = area_resize(gray, nh, nw)
    canvas = np.full((height, width), 255, np.uint8)
    canvas[:nh, :nw] = small
    return canvas, scale


def tf_resize_fit(image, height: int, width: int):
    """TF twin of :func:`resize_fit`: uint8 ``[h, w]`` -> (uint8 ``[height, width]``, ``[sx, sy]``)."""
    import tensorflow as tf

    h = tf.cast(tf.shape(image)[0], tf.float64)
    w = tf.cast(tf.shape(image)[1], tf.float64)
    scale = tf.minimum(height / h, width / w)
    # round half to even like Python's round()
    nh = tf.clip_by_value(tf.cast(tf.math.round(h * scale), tf.int32), 1, height)
    nw = tf.clip_by_value(tf.cast(tf.math.round(w * scale), tf.int32), 1, width)
    small, sxy = tf_area_resize(image, nh, nw)
    canvas = 255 - tf.pad(255 - small, [[0, height - nh], [0, width - nw]])
    return tf.ensure_shape(canvas, [height, width]), sxy


def tf_max_filter(x, size: int, pad_value: float | int = 0):
    """Maximum over a ``size x size`` window (centred, odd or even as OpenCV's anchor) of a 2-D
    tensor, the border padded with ``pad_value``; separable shifts, much faster on CPU than
    ``max_pool2d`` on one channel."""
    import tensorflow as tf

    before, after = size // 2, size - 1 - size // 2
    p = tf.pad(x, [[before, after], [0, 0]], constant_values=pad_value)
    n = tf.shape(x)[0]
    r = p[0:n]
    for i in range(1, size):
        r = tf.maximum(r, p[i:i + n])
    p = tf.pad(r, [[0, 0], [before, after]], constant_values=pad_value)
    m = tf.shape(x)[1]
    out = p[:, 0:m]
    for i in range(1, size):
        out = tf.maximum(out, p[:, i:i + m])
    return out


def tf_connected_components(mask):
    """8-connected components of a bool ``[h, w]`` mask: int32 labels (0 = background), each
    component labelled by its largest ``row * w + col + 1``; label propagation (3x3 max) with
    pointer jumping, so long components take few iterations."""
    import tensorflow as tf

    h, w = tf.shape(mask)[0], tf.shape(mask)[1]
    ids = tf.reshape(tf.range(1, h * w + 1, dtype=tf.int32), tf.stack([h, w]))
    lab0 = tf.where(mask, ids, 0)

    def body(lab, _):
        new = tf.where(mask, tf_max_filter(lab, 3, 0), 0)
        flat = tf.reshape(new, [-1])
        jumped = tf.gather(flat, tf.maximum(new - 1, 0))
        new = tf.where(mask, tf.maximum(new, jumped), 0)
        return new, tf.reduce_any(tf.not_equal(new, lab))

    lab, _ = tf.while_loop(lambda lab, changed: changed, body, (lab0, tf.constant(True)),
                           maximum_iterations=h * w + 1)
    return lab


# -- targets --------------------------------------------------------------------------------------
def _coverage(lo: np.ndarray, hi: np.ndarray, n: int) -> np.ndarray:
    """``[K, n]``: how much of cell ``j`` (``[j, j+1)``) lies inside ``[lo_k, hi_k)``."""
    j = np.arange(n, dtype=np.float32)[None, :]
    return np.clip(np.minimum(j + 1, hi[:, None]) - np.maximum(j, lo[:, None]), 0.0, 1.0)


def soft_box_mask(boxes: np.ndarray, height: int, width: int, stride: int = 1) -> np.ndarray:
    """Anti-aliased union of xyxy ``boxes`` (input pixels) on an ``[height, width]`` map at ``stride``.

    Each map cell holds the fraction of it covered by a box (the largest over boxes), so
    edges keep sub-cell positions: a model trained on it gives edges to a fraction of a cell.
    """
    b = np.asarray(boxes, np.float32).reshape(-1, 4) / float(stride)
    out = np.zeros((height, width), np.float32)
    if len(b) == 0:
        return out
    cx = _coverage(b[:, 0], b[:, 2], width)   # [K, W]
    cy = _coverage(b[:, 1], b[:, 3], height)  # [K, H]
    for k in range(len(b)):
        ys = np.nonzero(cy[k])[0]
        xs = np.nonzero(cx[k])[0]
        if len(ys) == 0 or len(xs) == 0:
            continue
        sl = (slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
        np.maximum(out[sl], cy[k, sl[0], None] * cx[k, None, sl[1]], out=out[sl])
    return out
