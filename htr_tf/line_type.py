"""Printed or handwritten: a line-level classifier for the lines found outside the handwritten area.

The handwritten-area model (:mod:`htr_tf.models.paragraph`) finds one block, and
:mod:`htr_tf.printed` reports the lines outside it as printed.  But a page's handwriting is not
always one block: a letter's date line and signature, a form's handwritten page id in a corner,
a note in the margin lie outside the main block, and were reported as printed and never read.
Here each line found outside the area is classified from its box crop, so the handwritten ones
are read with the rest and the printed ones stay apart.

Neither the area model's probability over the line nor the recogniser's confidence tells the
two apart (measured on the validation pages, 2026-12-06: print reads at confidence 0.99, a
handwritten page id at 0.93-0.97).  What does is the look of the ink, summarised in a few
numbers per line (:func:`line_features`): gradient orientations (type has straight vertical and
horizontal strokes), stroke run lengths and their spread, how evenly the glyphs' heights and
bottoms line up, edge sharpness.  A logistic regression on them (:class:`LineTypeConfig`, fitted by
:func:`fit_line_type`, ``htr train line-type``) is a few dozen numbers: it lives in the line
detector's config, so it travels with the detector into every export (SavedModel, LiteRT,
model server) and every backend classifies the same way.

>>> cfg = LineTypeConfig.identity(threshold=0.5)
>>> len(cfg.weights) == NUM_FEATURES
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from htr_tf.config import Config
from htr_tf.errors import ConfigError

__all__ = ["LineTypeConfig", "line_features", "printed_probability", "fit_line_type", "NUM_FEATURES",
           "FEATURE_VERSION", "FEATURE_HEIGHT"]

#: Crops are scaled to this height (px) before their features are taken.
FEATURE_HEIGHT = 32
#: Gradient-orientation bins over [0, 180) degrees.
ORIENTATION_BINS = 12
#: Bumped whenever :func:`line_features` changes, so a classifier fitted on other features is refused.
FEATURE_VERSION = 1
NUM_FEATURES = 1 + ORIENTATION_BINS + 2 + 4 + 6 + 1


@dataclass
class LineTypeConfig(Config):
    """A fitted printed-or-handwritten classifier: standardisation, logistic weights, threshold.

    A line outside the handwritten area is read as handwriting when its printed probability is
    below ``threshold``; the threshold is chosen low, so a printed line is rarely taken for
    handwriting (that reads print as handwriting, the worse mistake)."""

    feature_version: int = FEATURE_VERSION
    mean: tuple = ()
    scale: tuple = ()
    weights: tuple = ()
    bias: float = 0.0
    threshold: float = 0.5
    #: How it was fitted and scored (data, counts, validation): provenance only.
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.feature_version != FEATURE_VERSION:
            raise ConfigError(f"LineTypeConfig: feature_version {self.feature_version} is not supported "
                              f"(this htr-tf computes version {FEATURE_VERSION}): refit it (htr train line-type)")
        for name in ("mean", "scale", "weights"):
            v = tuple(float(x) for x in getattr(self, name))
            if len(v) != NUM_FEATURES:
                raise ConfigError(f"LineTypeConfig: {name} needs {NUM_FEATURES} values, got {len(v)}")
            setattr(self, name, v)
        if min(self.scale) <= 0:
            raise ConfigError("LineTypeConfig: scale values must be > 0")
        if not 0.0 < float(self.threshold) < 1.0:
            raise ConfigError(f"LineTypeConfig: threshold must be in (0, 1), got {self.threshold}")

    @classmethod
    def identity(cls, threshold: float = 0.5) -> "LineTypeConfig":
        """An unfitted classifier (every line probability 0.5): for tests and as a start."""
        return cls(mean=(0.0,) * NUM_FEATURES, scale=(1.0,) * NUM_FEATURES, weights=(0.0,) * NUM_FEATURES,
                   threshold=threshold)

    def probability(self, features: np.ndarray) -> np.ndarray:
        """Printed probability for each row of ``features`` (``[N, NUM_FEATURES]``)."""
        f = np.asarray(features, np.float64).reshape(-1, NUM_FEATURES)
        z = (f - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.weights) + self.bias)))


def _run_lengths(ink: np.ndarray) -> np.ndarray:
    """Lengths of the horizontal runs of ``True`` in each row of a boolean image."""
    d = np.diff(np.pad(ink.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    starts, ends = np.nonzero(d == 1)[1], np.nonzero(d == -1)[1]
    return (ends - starts).astype(np.float32) if len(starts) else np.zeros(1, np.float32)


def line_features(crop: np.ndarray) -> np.ndarray:
    """The look of one line's ink as ``NUM_FEATURES`` numbers, from a gray uint8 crop (dark ink
    on light paper) of any size: scaled to ``FEATURE_HEIGHT`` px high, Otsu-binarised."""
    import cv2

    c = np.asarray(crop)
    if c.ndim != 2 or min(c.shape) < 2:
        return np.zeros(NUM_FEATURES, np.float32)
    c = c.astype(np.uint8)
    h0, w0 = c.shape
    w = max(2, int(round(w0 * FEATURE_HEIGHT / h0)))
    c = cv2.resize(c, (w, FEATURE_HEIGHT), interpolation=cv2.INTER_AREA)
    h = FEATURE_HEIGHT
    g = c.astype(np.float32)
    _, b = cv2.threshold(c, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    ink = b > 0
    # gradient orientations, weighted by magnitude: type is straight, handwriting is not
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.hypot(gx, gy)
    ang = np.degrees(np.arctan2(gy, gx)) % 180.0
    bins = np.minimum((ang / (180.0 / ORIENTATION_BINS)).astype(int), ORIENTATION_BINS - 1)
    hist = np.bincount(bins.ravel(), weights=mag.ravel(), minlength=ORIENTATION_BINS)
    hist = hist / (hist.sum() + 1e-6)
    # edge sharpness
    m = mag[mag > 20]
    sharp = [float(np.mean(m > 200)), float(np.log1p(np.median(m)))] if m.size else [0.0, 0.0]
    # stroke run lengths (in line heights) and their spread, across and down
    rh, rv = _run_lengths(ink) / h, _run_lengths(ink.T) / h
    runs = [float(np.median(rh)), float(rh.std() / (rh.mean() + 1e-6)),
            float(np.median(rv)), float(rv.std() / (rv.mean() + 1e-6))]
    # glyphs: how many per line height of width, how even their heights, widths and bottoms
    _, _, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    stats = stats[1:]
    stats = stats[stats[:, 4] >= 4]
    if len(stats) >= 2:
        hh = stats[:, 3] / h
        bottom = (stats[:, 1] + stats[:, 3]) / h
        ww = stats[:, 2] / h
        med = float(np.median(hh))
        small = hh < 1.2 * med
        glyphs = [len(stats) / (w / h), float(hh.std() / (hh.mean() + 1e-6)),
                  float(np.std(bottom[small])) if small.sum() > 1 else 0.0,
                  float(np.median(ww)), float(ww.std() / (ww.mean() + 1e-6)), med]
    else:
        glyphs = [0.0] * 6
    f = np.concatenate([[ink.mean()], hist, sharp, runs, glyphs, [w / h / 50.0]]).astype(np.float32)
    return np.nan_to_num(f, nan=0.0, posinf=0.0, neginf=0.0)


def printed_probability(config: LineTypeConfig, crops: Sequence[np.ndarray]) -> np.ndarray:
    """Printed probability of each line crop (gray uint8)."""
    if len(crops) == 0:
        return np.zeros((0,), np.float64)
    return config.probability(np.stack([line_features(c) for c in crops]))


def fit_line_type(features: np.ndarray, printed: np.ndarray, l2: float = 1.0, iterations: int = 30,
                  threshold: float = 0.5, info: dict[str, Any] | None = None) -> LineTypeConfig:
    """Logistic regression (Newton steps, L2 ``l2``, classes weighted equally) of ``printed``
    (``[N]``, 1 = printed) on standardised ``features`` (``[N, NUM_FEATURES]``)."""
    X = np.asarray(features, np.float64).reshape(-1, NUM_FEATURES)
    y = np.asarray(printed, np.float64).reshape(-1)
    if len(X) != len(y) or len(X) == 0:
        raise ConfigError(f"fit_line_type: {len(X)} feature rows for {len(y)} labels")
    if y.min() == y.max():
        raise ConfigError("fit_line_type: needs both printed and handwritten lines")
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    A = np.c_[(X - mean) / scale, np.ones(len(X))]
    cw = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1.0 - y.mean()))
    reg = l2 * np.r_[np.ones(NUM_FEATURES), 0.0]
    w = np.zeros(NUM_FEATURES + 1)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(A @ w)))
        grad = A.T @ (cw * (p - y)) + reg * w
        hess = (A * (cw * p * (1.0 - p))[:, None]).T @ A + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return LineTypeConfig(mean=tuple(mean), scale=tuple(scale), weights=tuple(w[:-1]), bias=float(w[-1]),
                          threshold=threshold, info=dict(info or {}))

