"""The handwritten-area ("paragraph") model: where on a page the handwriting is.

A small U-Net (:func:`~htr_tf.models.layout_common.build_fcn`) reads the page resized to fit
``input_height x input_width`` (aspect ratio kept, padded with paper right and bottom) and
predicts, at ``fcn.out_stride``, the probability that a pixel lies inside a handwritten text
line's box.  The area is the bounding box of that mask (after a morphological opening that
removes specks, and without faint parts: see :func:`paragraph_box_from_mask`), each edge
placed to a fraction of a map cell: the training targets are anti-aliased
(:func:`~htr_tf.models.layout_common.soft_box_mask`), so a boundary cell's probability says
where inside it the edge lies.

Why a mask rather than one regressed box (the original's ResNet34 + box regression; not
built here, so not measured against): "is this pixel inside a handwritten line?" is a local
question that a ~40 K-parameter net answers at CPU speed; the union of the line boxes is
exactly the area on forms (IAM's paragraph box is the union of its line boxes) and on pages
that are not forms (a letter, GW pages: the whole written area); and the edges come out
finer than a map cell.

>>> area = ParagraphModel.load("htr_tf/assets/models/paragraph").predict(page)   # doctest: +SKIP
>>> area.shape, area.dtype                                                        # doctest: +SKIP
((4,), dtype('float32'))
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from htr_tf.config import Config
from htr_tf.errors import ConfigError, ModelError
from htr_tf.models.layout_common import (BUNDLE_FORMAT_VERSION, FCNConfig, build_fcn, check_page,
                                         load_keras_model, normalize_page, read_bundle_meta, resize_fit,
                                         save_bundle, save_module, tf_connected_components, tf_max_filter,
                                         tf_resize_fit)

__all__ = ["ParagraphConfig", "build_paragraph_model", "ParagraphModel", "paragraph_box_from_mask",
           "tf_paragraph_box_from_mask", "export_paragraph", "BUNDLE_KIND", "SIGNATURES"]

BUNDLE_KIND = "paragraph"
CONFIG_VERSION = 1
SIGNATURES = ("serving_default", "detect", "mask", "metadata")


@dataclass
class ParagraphConfig(Config):
    """Architecture, input size and post-processing of the handwritten-area model."""

    version: int = CONFIG_VERSION
    input_height: int = 384
    input_width: int = 256
    fcn: FCNConfig = field(default_factory=lambda: FCNConfig(filters=(16, 24, 32, 48, 64),
                                                             context_dilations=(2, 4), out_stride=2))
    #: Mask probability from which a cell counts as handwriting.
    threshold: float = 0.5
    #: Side of the square opening (map cells) that removes specks; 0 or 1 switches it off.
    open_size: int = 3
    #: A connected part of the mask counts only if its highest probability reaches this
    #: (a faint blob, e.g. printed text the net is unsure about, does not stretch the box).
    min_peak: float = 0.9

    def __post_init__(self) -> None:
        if isinstance(self.fcn, dict):
            self.fcn = FCNConfig.from_dict(self.fcn)
        if self.version != CONFIG_VERSION:
            raise ConfigError(f"ParagraphConfig: version {self.version} is not supported "
                              f"(this htr-tf reads {CONFIG_VERSION})")
        m = self.fcn.total_stride
        for name in ("input_height", "input_width"):
            v = int(getattr(self, name))
            if v < m or v % m:
                raise ConfigError(f"ParagraphConfig: {name}={v} must be a positive multiple of the "
                                  f"network's stride {m}")
        if not 0.0 < float(self.threshold) < 1.0:
            raise ConfigError(f"ParagraphConfig: threshold must be in (0, 1), got {self.threshold}")
        if self.open_size < 0:
            raise ConfigError("ParagraphConfig: open_size must be >= 0")
        if not 0.0 <= float(self.min_peak) <= 1.0:
            raise ConfigError(f"ParagraphConfig: min_peak must be in [0, 1], got {self.min_peak}")

    @classmethod
    def tiny(cls) -> "ParagraphConfig":
        """A few-thousand-parameter model for tests."""
        return cls(input_height=64, input_width=48,
                   fcn=FCNConfig(filters=(4, 8), context_dilations=(2,), out_stride=2))


def build_paragraph_model(config: ParagraphConfig):
    """The Keras model: ``image`` ``[B, input_height, input_width, 1]`` -> ``mask`` probabilities."""
    return build_fcn(config.fcn, (config.input_height, config.input_width), name="paragraph")


# -- post-processing ---------------------------------------------------------------------------------
def _edges(profile: np.ndarray, lo: int, hi: int) -> tuple[float, float]:
    """Sub-cell edges of the run ``[lo, hi)`` of a soft profile (values in [0, 1])."""
    p = np.clip(profile, 0.0, 1.0)
    before = p[lo - 1] if lo > 0 else 0.0
    after = p[hi] if hi < len(p) else 0.0
    return float(lo - before + 1.0 - p[lo]), float(hi - 1 + p[hi - 1] + after)


def paragraph_box_from_mask(prob: np.ndarray, threshold: float = 0.5, open_size: int = 3,
                            min_peak: float = 0.0) -> tuple[np.ndarray | None, float]:
    """Box (xyxy, map cells, sub-cell edges) and mean probability of a mask; ``(None, 0)`` if empty.

    Cells ``>= threshold``, opened with a ``open_size`` square; of the 8-connected parts,
    those whose highest probability is below ``min_peak`` are dropped; the box bounds the
    rest, each edge moved to where the soft mask crosses one half.
    """
    import cv2

    p = np.asarray(prob, np.float32)
    m = (p >= threshold).astype(np.uint8)
    if open_size > 1:
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((open_size, open_size), np.uint8))
    if min_peak > 0 and m.any():
        n, labels = cv2.connectedComponents(m, connectivity=8)
        peak = np.zeros(n, np.float32)
        np.maximum.at(peak, labels.ravel(), p.ravel())
        m = ((peak >= min_peak)[labels] & (labels > 0)).astype(np.uint8)
    rows = np.nonzero(m.any(axis=1))[0]
    cols = np.nonzero(m.any(axis=0))[0]
    if len(rows) == 0:
        return None, 0.0
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    fx0, fx1 = _edges(p[y0:y1].max(axis=0), x0, x1)
    fy0, fy1 = _edges(p[:, x0:x1].max(axis=1), y0, y1)
    score = float(p[m > 0].mean())
    return np.array([fx0, fy0, fx1, fy1], np.float32), score


def tf_paragraph_box_from_mask(prob, threshold: float = 0.5, open_size: int = 3, min_peak: float = 0.0):
    """TF twin of :func:`paragraph_box_from_mask`: ``[h, w]`` -> (box ``[4]``, score, found)."""
    import tensorflow as tf

    p = tf.cast(prob, tf.float32)
    m = tf.cast(p >= threshold, tf.float32)
    if open_size > 1:
        k = int(open_size)
        m = -tf_max_filter(-m, k, pad_value=-2.0)   # erosion (the border does not erode)
        m = tf_max_filter(m, k, pad_value=-1.0)     # dilation
    m = m > 0.5
    if min_peak > 0:
        labels = tf_connected_components(m)
        where = tf.where(m)
        _, seg = tf.unique(tf.gather_nd(labels, where))
        n = tf.reduce_max(tf.concat([seg, [-1]], 0)) + 1
        peak = tf.math.unsorted_segment_max(tf.gather_nd(p, where), seg, n)
        keep = tf.gather(peak, seg) >= min_peak
        m = tf.scatter_nd(tf.boolean_mask(where, keep), tf.ones_like(tf.boolean_mask(seg, keep), tf.bool),
                          tf.shape(m, out_type=tf.int64))
    rows = tf.cast(tf.where(tf.reduce_any(m, axis=1))[:, 0], tf.int32)
    cols = tf.cast(tf.where(tf.reduce_any(m, axis=0))[:, 0], tf.int32)
    found = tf.size(rows) > 0

    def box():
        y0, y1 = rows[0], rows[-1] + 1
        x0, x1 = cols[0], cols[-1] + 1
        pc = tf.clip_by_value(p, 0.0, 1.0)

        def edges(profile, lo, hi):
            padded = tf.pad(profile, [[1, 1]])
            before, first = padded[lo], padded[lo + 1]
            last, after = padded[hi], padded[hi + 1]
            return (tf.cast(lo, tf.float32) - before + 1.0 - first,
                    tf.cast(hi - 1, tf.float32) + last + after)

        fx0, fx1 = edges(tf.reduce_max(pc[y0:y1], axis=0), x0, x1)
        fy0, fy1 = edges(tf.reduce_max(pc[:, x0:x1], axis=1), y0, y1)
        score = tf.reduce_mean(tf.boolean_mask(p, m))
        return tf.stack([fx0, fy0, fx1, fy1]), score

    def empty():
        return tf.zeros([4], tf.float32), tf.constant(0.0)

    b, score = tf.cond(found, box, empty)
    return b, score, found


# -- the bundle ----------------------------------------------------------------------------------------
@dataclass
class ParagraphModel:
    """A handwritten-area model bundle: the Keras model, its config and ``info`` (provenance, metrics).

    A bundle directory holds ``model.keras`` and ``htr.json`` (kind ``paragraph``, format
    version, config, input geometry, info).
    """

    model: Any
    config: ParagraphConfig
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._fn = None

    @classmethod
    def create(cls, config: ParagraphConfig, info: dict | None = None) -> "ParagraphModel":
        """A freshly initialised model."""
        return cls(build_paragraph_model(config), config, dict(info or {}))

    # -- persistence -------------------------------------------------------------------------------
    def metadata(self) -> dict:
        c = self.config
        return {"kind": BUNDLE_KIND, "format_version": BUNDLE_FORMAT_VERSION, "config": c.to_dict(),
                "input": {"height": c.input_height, "width": c.input_width, "out_stride": c.fcn.out_stride,
                          "resize": "fit keeping the aspect ratio, pad right and bottom with 255",
                          "normalization": "1 - gray / 255"},
                "info": self.info}

    def save(self, path: str | os.PathLike) -> None:
        """Write the bundle directory atomically."""
        save_bundle(path, self.model, self.metadata())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ParagraphModel":
        """Load a bundle; :class:`ModelError` naming ``path`` when missing, corrupt or incompatible."""
        meta = read_bundle_meta(path, BUNDLE_KIND)
        try:
            config = ParagraphConfig.from_dict(meta["config"])
        except (KeyError, TypeError, ValueError, ConfigError) as e:
            raise ModelError(f"{path}: bad bundle metadata: {e}") from None
        model = load_keras_model(path)
        want = (None, config.input_height, config.input_width, 1)
        if tuple(model.input_shape) != want:
            raise ModelError(f"{path}: model input {model.input_shape} does not match the config {want}")
        return cls(model, config, dict(meta.get("info") or {}))

    # -- inference -----------------------------------------------------------------------------------
    def preprocess(self, page: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        """Page -> (float32 ``[H, W]`` model input, ``(sx, sy)`` input px per page px)."""
        canvas, scale = resize_fit(page, self.config.input_height, self.config.input_width)
        return normalize_page(canvas), scale

    def masks(self, inputs: np.ndarray) -> np.ndarray:
        """Probability maps ``[B, h, w]`` for preprocessed inputs ``[B, H, W]``."""
        import tensorflow as tf

        if self._fn is None:
            model = self.model

            @tf.function(input_signature=[tf.TensorSpec([None, self.config.input_height,
                                                         self.config.input_width, 1], tf.float32)],
                         autograph=False)
            def fn(x):
                return model(x, training=False)["mask"]

            self._fn = fn
        x = np.asarray(inputs, np.float32)[..., None]
        return self._fn(tf.constant(x)).numpy()[..., 0]

    def postprocess(self, prob: np.ndarray, scale: tuple[float, float], page_shape: tuple[int, int]
                    ) -> tuple[np.ndarray, float]:
        """Map -> (box xyxy in page px, score); the whole page with score 0 when nothing is found."""
        h, w = page_shape
        c = self.config
        box, score = paragraph_box_from_mask(prob, c.threshold, c.open_size, c.min_peak)
        if box is None:
            return np.array([0, 0, w, h], np.float32), 0.0
        st = self.config.fcn.out_stride
        box = box * np.array([st / scale[0], st / scale[1], st / scale[0], st / scale[1]], np.float32)
        box = np.clip(box, 0, [w, h, w, h]).astype(np.float32)
        return box, score

    def detect(self, page: np.ndarray) -> tuple[np.ndarray, float]:
        """The handwritten area of a gray uint8 page: (box xyxy page px, score in [0, 1])."""
        page = check_page(page)
        x, scale = self.preprocess(page)
        return self.postprocess(self.masks(x[None])[0], scale, page.shape[:2])

    def predict(self, page: np.ndarray) -> np.ndarray:
        """The handwritten area of a gray uint8 page as an xyxy box in page pixels.

        A page where nothing is found gives the whole page (so line detection still runs).
        """
        return self.detect(page)[0]

    def count_params(self) -> int:
        return int(self.model.count_params())


# -- export -----------------------------------------------------------------------------------------
def export_paragraph(paragraph: ParagraphModel, out_dir: str | os.PathLike) -> Path:
    """Export a SavedModel for TF Serving (written beside ``out_dir``, renamed into place).

    Signatures: ``detect`` (also ``serving_default``): ``image`` uint8 ``[H, W]`` (any size,
    gray) -> ``box`` float32 ``[4]`` xyxy page px (the whole page when nothing is found),
    ``score`` float32, ``found`` bool, for clients that send pages; ``mask``: ``images`` uint8
    ``[B, input_height, input_width]`` (pages resized by :meth:`ParagraphModel.preprocess`'s
    ``resize_fit``, paper 255) -> ``mask`` float32 ``[B, h, w]``: the network alone, so a
    client that resizes and post-processes with this module's numpy code (htr-tf's gRPC
    backend) gets the in-process boxes; ``metadata``: ``json`` (the bundle's ``htr.json``,
    also the asset ``assets/htr.json``).
    """
    import tensorflow as tf

    c = paragraph.config
    meta_json = json.dumps(paragraph.metadata(), indent=2, ensure_ascii=False)
    H, W, stride = c.input_height, c.input_width, c.fcn.out_stride

    class ParagraphModule(tf.Module):
        def __init__(self, asset: Path) -> None:
            super().__init__(name="htr_paragraph")
            self.model = paragraph.model
            self.htr_json = tf.saved_model.Asset(str(asset))

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.uint8, name="image")])
        def detect(self, image):
            h = tf.cast(tf.shape(image)[0], tf.float32)
            w = tf.cast(tf.shape(image)[1], tf.float32)
            canvas, scale = tf_resize_fit(image, H, W)
            x = 1.0 - tf.cast(canvas, tf.float32) / 255.0
            prob = self.model(x[None, :, :, None], training=False)["mask"][0, :, :, 0]
            box, score, found = tf_paragraph_box_from_mask(prob, c.threshold, c.open_size, c.min_peak)
            mul = tf.stack([stride / scale[0], stride / scale[1], stride / scale[0], stride / scale[1]])
            box = tf.clip_by_value(box * mul, 0.0, tf.stack([w, h, w, h]))
            box = tf.where(found, box, tf.stack([0.0, 0.0, w, h]))
            return {"box": box, "score": score, "found": found}

        @tf.function(input_signature=[tf.TensorSpec([None, H, W], tf.uint8, name="images")])
        def mask(self, images):
            x = 1.0 - tf.cast(images, tf.float32) / 255.0          # normalize_page, bit for bit
            return {"mask": self.model(x[..., None], training=False)["mask"][..., 0]}

        @tf.function(input_signature=[])
        def metadata(self):
            return {"json": tf.constant(meta_json)}

    return save_module(ParagraphModule, meta_json, out_dir,
                        lambda m: {"serving_default": m.detect.get_concrete_function(),
                                   "detect": m.detect.get_concrete_function(),
                                   "mask": m.mask.get_concrete_function(),
                                   "metadata": m.metadata.get_concrete_function()})
