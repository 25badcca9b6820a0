"""Augmentation of line images (and photometric augmentation of pages) inside tf.data.

Everything here is graph-mode TensorFlow driven by *stateless* random ops with explicit
seeds: the same seed gives the same image, whatever the order parallel ``tf.data.map``
calls run in.  Keras and keras-cv augmentation layers draw from a stateful generator
shared by all calls, so a seeded pipeline built with them gives different images on each
pass (checked with ``keras_cv.layers.RandomRotation(seed=3)`` in a ``tf.data.map``: two
iterations differ); hence own ops.

Two stages, both vectorised over a batch (per line, the cost is dominated by the number
of small ops rather than by pixels, so the pipeline runs them once per batch of lines):

* :func:`augment_geometry_batch`, in place of the geometry's resize: one affine
  resampling combining slant (shear), rotation, scale/aspect jitter, new random margins
  around the ink (jittered, never cutting ink) and the resize to the line height; in some batches a
  smooth elastic warp per column (letter spacing, baseline wobble).
* :func:`augment_batch`, on the padded batch: stroke width (2x2 min/max), binarisation
  (as many collections ship their lines), blur, ink darkness/paper level/gamma, background
  gradient and paper texture, noise; the padding is restored to paper afterwards.

:func:`augment_line` chains both for one crop.  Every range is bounded so the text stays
legible (paper minus ink never drops below ``min_contrast`` gray levels).  Crops taller
than 2.5x the output are area-downscaled first (:func:`shrink_tall_crop`) so the bilinear
sampling does not alias.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from htr_tf.config import Config

__all__ = ["AugmentConfig", "augment_line", "augment_geometry_batch", "augment_batch", "augment_page",
           "shrink_tall_crop"]


@dataclasses.dataclass
class AugmentConfig(Config):
    """Probabilities and ranges of the line and page augmentations (all bounded for legibility)."""

    version: int = 1
    #: Output height of :func:`augment_line`.  The line pipeline ignores it: there the
    #: output is the line geometry's height directly.
    work_height: int = 64
    # -- geometry (drawn per line) ----------------------------------------------------
    p_affine: float = 0.9
    #: Horizontal shear ``dx = -slant * dy`` (tan of the slant angle; + leans right).
    slant: tuple = (-0.4, 0.4)
    rotate_deg: float = 1.5
    #: Horizontal and vertical scale factors: their ratio is the aspect jitter.
    scale_x: tuple = (0.8, 1.2)
    scale_y: tuple = (0.9, 1.1)
    #: Share of the batches warped elastically (drawn per batch: it costs as much as all
    #: the rest of the geometry; every line of such a batch gets its own field).
    p_elastic: float = 0.25
    #: Displacement standard deviation, as a fraction of the line height.
    elastic_alpha: float = 0.025
    #: Spacing of the elastic control points, as a fraction of the line height.
    elastic_cell: float = 0.6
    p_margin: float = 0.8
    #: Each side's margin around the ink is scaled by a factor from ``margin_scale`` and
    #: grown by a fraction of the ink height from ``margin_add``: crops keep roughly
    #: the framing (hence the text scale) of the data, with jitter.
    margin_scale: tuple = (0.4, 1.3)
    margin_add: tuple = (0.0, 0.12)
    # -- strokes ----------------------------------------------------------------------------
    p_stroke: float = 0.4
    #: Blend weight of a 2x2 min-pool (thicker ink) / max-pool (thinner ink).
    thicken: tuple = (0.3, 1.0)
    thin: tuple = (0.2, 0.6)
    # -- photometric ------------------------------------------------------------------------
    #: Share of the lines binarised (ink 0, paper 255, before blur and levels), as many
    #: collections ship their lines: soup P12 read GW 278-279 at 14.1 % CER binarised by
    #: Otsu's threshold, 7.2 % as scanned (benchmarks/bench_robustness.py --binarize).
    p_binarize: float = 0.0
    #: Threshold between the line's darkest ink (0) and its paper (1).
    binarize_level: tuple = (0.35, 0.7)
    #: Width of the threshold's soft edge, in gray levels (the edge pixels of a binarised
    #: scan shrunk to the line height are gray).
    binarize_edge: tuple = (1.0, 12.0)
    #: Share of the lines whose paper level, ink level and gamma change.
    p_ink: float = 0.8
    paper_level: tuple = (170.0, 255.0)
    ink_level: tuple = (0.0, 70.0)
    gamma: tuple = (0.7, 1.4)
    #: Smallest paper-minus-ink difference, in gray levels.
    min_contrast: float = 110.0
    #: Share of the lines given a background gradient and paper texture.
    p_background: float = 0.5
    #: Paper darkening at the far end of a linear gradient (fraction).
    gradient: tuple = (0.0, 0.15)
    #: Standard deviation of the low-frequency paper texture (fraction).
    texture: tuple = (0.0, 0.04)
    #: Share of the batches blurred (each line with its own sigma).
    p_blur: float = 0.3
    blur_sigma: tuple = (0.3, 0.9)
    #: Share of the batches with pixel noise (each line with its own level).
    p_noise: float = 0.5
    #: Standard deviation of the (uniform) pixel noise, in gray levels.
    noise_std: tuple = (1.0, 8.0)

    def __post_init__(self) -> None:
        if int(self.work_height) < 8:
            raise ValueError(f"work_height must be >= 8, got {self.work_height}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name.startswith("p_") and not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"{f.name} must be a probability in [0, 1], got {v}")
            if isinstance(v, (tuple, list)):
                if len(v) != 2 or float(v[0]) > float(v[1]):
                    raise ValueError(f"{f.name} must be a (low, high) range, got {v}")
                object.__setattr__(self, f.name, (float(v[0]), float(v[1])))

    @classmethod
    def off(cls) -> "AugmentConfig":
        """A config that changes nothing (every probability 0)."""
        return cls(**{f.name: 0.0 for f in dataclasses.fields(cls) if f.name.startswith("p_")})


DEFAULT_AUGMENT = AugmentConfig()


def _tf():
    import tensorflow as tf

    return tf


def _extent(mask, n_valid):
    """Per row of ``mask [B, n]``: first index and one past the last index that is true
    (``0`` and ``n_valid`` where none is)."""
    tf = _tf()
    any_ = tf.reduce_any(mask, axis=1)
    n = tf.cast(tf.shape(mask)[1], tf.float32)
    m = tf.cast(mask, tf.int32)
    first = tf.cast(tf.argmax(m, axis=1), tf.float32)
    last = n - tf.cast(tf.argmax(tf.reverse(m, [1]), axis=1), tf.float32)
    return tf.where(any_, first, 0.0), tf.where(any_, last, n_valid)


def shrink_tall_crop(image, height: int):
    """Area-downscale a uint8 ``[h, w, 1]`` crop taller than 2.5 x ``height`` to 2 x ``height``,
    so the bilinear sampling of :func:`augment_geometry_batch` does not alias."""
    tf = _tf()
    h = tf.shape(image)[0]
    w = tf.shape(image)[1]

    def shrink():
        scale = (2.0 * height) / tf.cast(h, tf.float32)
        nw = tf.maximum(tf.cast(tf.round(tf.cast(w, tf.float32) * scale), tf.int32), 1)
        small = tf.image.resize(tf.cast(image, tf.float32), tf.stack([2 * height, nw]), method="area")
        return tf.cast(tf.clip_by_value(tf.round(small), 0.0, 255.0), tf.uint8)

    return tf.cond(h * 2 > 5 * height, shrink, lambda: image)


def augment_geometry_batch(images, heights, widths, seed, config: AugmentConfig | None = None, *,
                           height: int = 64, min_width: int = 1, max_width: int = 1 << 20,
                           width_floor: Callable[[Any], Any] | None = None):
    """Slant, rotation, scale/aspect jitter and new margins, resized to ``height``, for a batch.

    ``images``: uint8 ``[B, h, w, 1]``, image ``i`` in its top-left ``heights[i] x widths[i]``,
    the rest 255 (as ``padded_batch`` with padding value 255 leaves it); ``seed``: int
    ``[2]``.  Returns uint8 ``[B, height, W, 1]`` and the
    int32 widths ``[B]`` (aspect ratio kept, clipped to ``[min_width, max_width]`` like
    :func:`htr_tf.geometry.tf_resize_line`; columns beyond are paper, 255).  ``width_floor``
    maps the widths to lower bounds for them (the line pipeline uses it so augmentation never
    makes a label too long for its line).

    One ``ImageProjectiveTransformV3`` (a fused C++ kernel) per batch does the affine map
    and the resize together, so nothing is resampled twice and the per-line cost is a few
    vectorised ops.  New margins are drawn around each line's ink, so ink is never cut.
    Then, in a ``p_elastic`` share of the batches, a smooth
    random warp per column, horizontal (uneven letter spacing) and vertical (baseline
    wobble), each line with its own field.
    """
    tf = _tf()
    cfg = config or DEFAULT_AUGMENT
    seed = tf.cast(seed, tf.int64)
    images = tf.convert_to_tensor(images)
    B, h, w = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    hb = tf.cast(heights, tf.float32)
    wb = tf.cast(widths, tf.float32)
    rows_ok = tf.range(h)[None, :] < tf.cast(heights, tf.int32)[:, None]
    cols_ok = tf.range(w)[None, :] < tf.cast(widths, tf.int32)[:, None]

    # paper level and ink extent of each line from column and row reductions (strided
    # subsampling costs more than these full-resolution passes): the paper is the lightest
    # column mean (a column between words), ink is darker than 0.6 x paper
    img = images[..., 0]
    col_sum = tf.reduce_sum(tf.cast(img, tf.float32), axis=1)  # [B, w]
    col_mean = (col_sum - 255.0 * (tf.cast(h, tf.float32) - hb)[:, None]) / tf.maximum(hb, 1.0)[:, None]
    paper = tf.reduce_max(tf.where(cols_ok, col_mean, 0.0), axis=1)
    thr = tf.cast(tf.clip_by_value(0.6 * paper, 0.0, 255.0), tf.uint8)[:, None]
    ix0, ix1 = _extent(tf.logical_and(tf.reduce_min(img, axis=1) < thr, cols_ok), wb)
    iy0, iy1 = _extent(tf.logical_and(tf.reduce_min(img, axis=2) < thr, rows_ok), hb)

    u = tf.random.stateless_uniform(tf.stack([B, 16]), seed)
    lerp = lambda v, r: r[0] + (r[1] - r[0]) * v  # noqa: E731
    do_affine, do_margin = u[:, 0] < cfg.p_affine, u[:, 1] < cfg.p_margin
    slant = tf.where(do_affine, lerp(u[:, 2], cfg.slant), 0.0)
    theta = tf.where(do_affine, lerp(u[:, 3], (-cfg.rotate_deg, cfg.rotate_deg)) * (math.pi / 180.0), 0.0)
    sx = tf.where(do_affine, lerp(u[:, 4], cfg.scale_x), 1.0)
    sy = tf.where(do_affine, lerp(u[:, 5], cfg.scale_y), 1.0)
    # forward map p' = A (p - c): scale, then shear (dx = -slant dy), then rotate
    c, s = tf.cos(theta), tf.sin(theta)
    a00, a01 = c * sx, -c * slant * sy - s * sy
    a10, a11 = s * sx, -s * slant * sy + c * sy
    det = a00 * a11 - a01 * a10
    i00, i01, i10, i11 = a11 / det, -a01 / det, -a10 / det, a00 / det

    bx0 = tf.where(do_margin, ix0, 0.0)
    bx1 = tf.where(do_margin, ix1, wb)
    by0 = tf.where(do_margin, iy0, 0.0)
    by1 = tf.where(do_margin, iy1, hb)
    cx, cy = (bx0 + bx1) / 2.0, (by0 + by1) / 2.0
    dxs = tf.stack([bx0, bx0, bx1, bx1], 1) - cx[:, None]
    dys = tf.stack([by0, by1, by0, by1], 1) - cy[:, None]
    tcx = a00[:, None] * dxs + a01[:, None] * dys
    tcy = a10[:, None] * dxs + a11[:, None] * dys
    ox0, ox1 = tf.reduce_min(tcx, 1), tf.reduce_max(tcx, 1)
    oy0, oy1 = tf.reduce_min(tcy, 1), tf.reduce_max(tcy, 1)
    # old margins (left, right, top, bottom) around the ink, scaled like the ink
    old = tf.stack([bx0 * sx, (wb - bx1) * sx, by0 * sy, (hb - by1) * sy], 1)
    m = (old * lerp(u[:, 6:10], cfg.margin_scale)
         + lerp(u[:, 10:14], cfg.margin_add) * (oy1 - oy0)[:, None] + 1.0)
    m = tf.where(do_margin[:, None], m, 0.0)
    full_w = tf.maximum(ox1 - ox0 + m[:, 0] + m[:, 1], 1.0)
    full_h = tf.maximum(oy1 - oy0 + m[:, 2] + m[:, 3], 1.0)
    out_w = tf.clip_by_value(tf.cast(tf.round(full_w * (height / full_h)), tf.int32), min_width, max_width)
    if width_floor is not None:
        out_w = tf.maximum(out_w, tf.cast(width_floor(out_w), tf.int32))
    sx_out = tf.cast(out_w, tf.float32) / full_w  # output pixels per affine-output pixel
    sy_out = height / full_h
    # output pixel u (centre u + .5) -> affine-output p' = (u + .5) / s + (o0 - m)
    # -> source p = Ainv p' + c -> source pixel index p - .5
    px0, py0 = 0.5 / sx_out + ox0 - m[:, 0], 0.5 / sy_out + oy0 - m[:, 2]
    tx = i00 * px0 + i01 * py0 + cx - 0.5
    ty = i10 * px0 + i11 * py0 + cy - 0.5
    zeros = tf.zeros_like(tx)
    transforms = tf.stack([i00 / sx_out, i01 / sy_out, tx, i10 / sx_out, i11 / sy_out, ty, zeros, zeros], 1)

    width_out = tf.reduce_max(out_w)
    # outside each crop (batch padding; beyond the canvas, via NEAREST) is its own paper;
    # uint8 in and out, so the passes over the big raw batch move bytes, not floats
    valid = tf.logical_and(rows_ok[:, :, None, None], cols_ok[:, None, :, None])
    paper_u8 = tf.cast(tf.clip_by_value(tf.round(paper), 0.0, 255.0), tf.uint8)
    xin = tf.where(valid, images, paper_u8[:, None, None, None])
    y = tf.raw_ops.ImageProjectiveTransformV3(
        images=xin, transforms=transforms, output_shape=tf.stack([height, width_out]),
        fill_value=255.0, interpolation="BILINEAR", fill_mode="NEAREST")[..., 0]
    elastic_seed = seed + tf.constant([3, 7919], tf.int64)

    def warp(y8):
        # per line, a smooth random displacement per output column, horizontal and vertical
        # (|dy| < 4 px); columns are contiguous rows after a transpose, so both warps are
        # plain gathers
        y = tf.cast(y8, tf.float32) - paper[:, None, None]  # paper -> 0: the rim pads with it
        P = 4
        cell = max(cfg.elastic_cell * height, 4.0)
        n = tf.cast(tf.math.ceil(tf.cast(width_out, tf.float32) / cell), tf.int32) + 1
        grid = tf.random.stateless_normal(tf.stack([B, 1, n, 2]), elastic_seed) * (cfg.elastic_alpha * height)
        field = tf.image.resize(grid, tf.stack([1, width_out]), method="bilinear")[:, 0]  # [B, W, 2]
        src = tf.clip_by_value(tf.cast(tf.range(width_out), tf.float32)[None] + field[..., 0], 0.0,
                               tf.cast(width_out - 1, tf.float32))
        c0 = tf.floor(src)
        f = tf.reshape(src - c0, [-1, 1])
        c0 = tf.cast(c0, tf.int32)
        c1 = tf.minimum(c0 + 1, width_out - 1)
        base = tf.range(B)[:, None] * width_out
        cols = tf.reshape(tf.transpose(y, [0, 2, 1]), [-1, height])  # [B * W, H]
        z = (tf.gather(cols, tf.reshape(base + c0, [-1])) * (1.0 - f)
             + tf.gather(cols, tf.reshape(base + c1, [-1])) * f)
        dy = tf.clip_by_value(tf.reshape(field[..., 1], [-1]), 1.0 - P, P - 1.0)
        r0 = tf.floor(dy)
        g = (dy - r0)[:, None]
        flat = tf.reshape(tf.pad(z, [[0, 0], [P, P]]), [-1])  # 0 = paper
        idx = ((tf.range(B * width_out) * (height + 2 * P))[:, None] + tf.range(height)[None, :]
               + P + tf.cast(r0, tf.int32)[:, None])
        z = tf.gather(flat, idx) * (1.0 - g) + tf.gather(flat, idx + 1) * g
        z = tf.transpose(tf.reshape(z, [B, width_out, height]), [0, 2, 1]) + paper[:, None, None]
        return tf.cast(tf.clip_by_value(tf.round(z), 0.0, 255.0), tf.uint8)

    if cfg.p_elastic > 0:
        do_elastic = tf.random.stateless_uniform((), seed + tf.constant([4, 104729], tf.int64)) < cfg.p_elastic
        y = tf.cond(do_elastic, lambda: warp(y), lambda: y)
    keep = tf.range(width_out)[None, None, :] < out_w[:, None, None]
    return tf.where(keep, y, tf.constant(255, tf.uint8))[..., None], out_w


# -- per batch: strokes and photometric ----------------------------------------------------
def _neighbours(x, axis: int):
    """The previous and next pixel along ``axis`` (1 or 2) of ``x [B, H, W]``; beyond the
    edges, the edge pixel itself (slices and a concat: cheaper than a mirrored pad)."""
    tf = _tf()
    if axis == 2:
        return (tf.concat([x[:, :, :1], x[:, :, :-1]], 2), tf.concat([x[:, :, 1:], x[:, :, -1:]], 2))
    return (tf.concat([x[:, :1], x[:, :-1]], 1), tf.concat([x[:, 1:], x[:, -1:]], 1))


def augment_batch(images, widths, seed, config: AugmentConfig | None = None):
    """Stroke width, blur, ink/paper levels, background and noise on a padded batch.

    ``images``: uint8 ``[B, H, W, 1]`` (dark ink on light paper, right-padded with 255);
    ``widths``: int ``[B]`` true widths (columns beyond are padding and come back as 255);
    ``seed``: int ``[2]``.  Each image gets its own parameters.  Strokes, blur and noise
    are switched on per batch (with ``p_stroke``, ``p_blur``, ``p_noise``; each image then
    draws its own strength): their cost is paid only by the batches that use them.  Ink
    levels and background are drawn per image.  Returns uint8, same shape.
    """
    tf = _tf()
    cfg = config or DEFAULT_AUGMENT
    seed = tf.cast(seed, tf.int64)
    x = tf.cast(images[..., 0], tf.float32)
    B, H, W = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    valid = tf.range(W)[None, None, :] < tf.cast(widths, tf.int32)[:, None, None]  # [B, 1, W]
    u = tf.random.stateless_uniform(tf.stack([B, 20]), seed)
    col = lambda i: u[:, i][:, None, None]  # noqa: E731  one parameter per image, [B, 1, 1]
    rng = lambda i, r: r[0] + (r[1] - r[0]) * col(i)  # noqa: E731
    on = lambda i, p: tf.cast(col(i) < p, tf.float32)  # noqa: E731
    per_batch = tf.random.stateless_uniform((3,), seed + tf.constant([5, 3], tf.int64))

    # paper level: the lightest column mean (a column between words)
    col_mean = tf.reduce_mean(x, axis=1)  # [B, W]
    paper = tf.reduce_max(tf.where(valid[:, 0], col_mean, 0.0), axis=1)[:, None, None]

    if cfg.p_stroke > 0:
        def strokes(x):
            thicker = tf.cast(col(1) < 0.5, tf.float32)
            a = thicker * rng(2, cfg.thicken) + (1 - thicker) * rng(3, cfg.thin)
            sign = 2.0 * (1.0 - thicker) - 1.0  # thicker ink: min = -max(-x)
            y = sign * x
            y = tf.maximum(y, _neighbours(y, 2)[1])
            y = tf.maximum(y, _neighbours(y, 1)[1])
            return x + a * (sign * y - x)

        x = tf.cond(per_batch[0] < cfg.p_stroke, lambda: strokes(x), lambda: x)
    if cfg.p_binarize > 0:
        ink = tf.reduce_min(tf.where(valid, x, 255.0), axis=[1, 2])[:, None, None]
        threshold = ink + rng(17, cfg.binarize_level) * tf.maximum(paper - ink, 1.0)
        binary = 255.0 * tf.sigmoid((x - threshold) / rng(18, cfg.binarize_edge))
        x = tf.where(col(16) < cfg.p_binarize, binary, x)
        paper = tf.where(col(16) < cfg.p_binarize, 255.0, paper)
    if cfg.p_blur > 0:
        def blur(x):
            # 3-tap gaussian [a, 1 - 2a, a] per axis
            e = tf.exp(-0.5 / tf.square(rng(5, cfg.blur_sigma)))
            a = e / (1.0 + 2.0 * e)
            for axis in (2, 1):
                prev, nxt = _neighbours(x, axis)
                x = x + a * (prev + nxt - 2.0 * x)
            return x

        x = tf.cond(per_batch[1] < cfg.p_blur, lambda: blur(x), lambda: x)
    if cfg.p_ink > 0:
        p_new = rng(7, cfg.paper_level)
        i_new = tf.maximum(tf.minimum(rng(8, cfg.ink_level), p_new - cfg.min_contrast), 0.0)
        # z ** gamma as the quadratic through (0, 0), (0.5, 0.5 ** gamma), (1, 1): two
        # multiply-adds instead of a transcendental per pixel
        bend = 4.0 * tf.pow(0.5, rng(9, cfg.gamma)) - 2.0
        # images not drawn keep their levels (only pixels lighter than their paper change)
        keep = 1.0 - on(6, cfg.p_ink)
        p_new = p_new + keep * (paper - p_new)
        i_new = i_new * (1.0 - keep)
        bend = bend * (1.0 - keep)
        z = tf.minimum(x * (1.0 / tf.maximum(paper, 1.0)), 1.0)
        x = i_new + z * ((p_new - i_new) * (1.0 + bend) - ((p_new - i_new) * bend) * z)
    if cfg.p_background > 0:
        # gradient and texture on a grid of 8x8-pixel cells, upsampled once
        gh, gw = tf.maximum(H // 8, 2), tf.maximum(W // 8, 2)
        angle = rng(11, (0.0, 2 * math.pi))
        true_w = tf.cast(tf.reshape(tf.maximum(widths, 1), [-1, 1, 1]), tf.float32)
        xs = tf.linspace(0.0, 1.0, gw)[None, None, :] * tf.cast(W, tf.float32) / true_w  # ramp over the line
        ys = tf.linspace(0.0, 1.0, gh)[None, :, None]
        ramp = tf.clip_by_value(0.5 + 0.5 * (tf.cos(angle) * (2 * xs - 1) + tf.sin(angle) * (2 * ys - 1)), 0.0, 1.0)
        noise = tf.random.stateless_normal(tf.stack([B, gh, gw]), seed + [1, 7919]) * rng(13, cfg.texture)
        factor = (1.0 - rng(12, cfg.gradient) * ramp) * (1.0 + noise)
        factor = tf.where(col(10) < cfg.p_background, factor, 1.0)
        x = x * tf.image.resize(factor[..., None], tf.stack([H, W]), method="bilinear")[..., 0]
    if cfg.p_noise > 0:
        def noise(x):
            # uniform noise of the drawn standard deviation: cheaper than gaussian
            half = rng(15, cfg.noise_std) * math.sqrt(3.0)
            return x + (tf.random.stateless_uniform(tf.shape(x), seed + [2, 15838]) - 0.5) * (2.0 * half)

        x = tf.cond(per_batch[2] < cfg.p_noise, lambda: noise(x), lambda: x)
    x = tf.where(valid, x + 0.5, 255.0)
    return tf.saturate_cast(x, tf.uint8)[..., None]  # clips; + 0.5 then truncation rounds


# -- single images ----------------------------------------------------------------------------
def augment_line(image, seed, config: AugmentConfig | None = None):
    """Augment one line crop: uint8 ``[h, w, 1]`` -> uint8 ``[h', w', 1]`` (size changes).

    ``seed`` is an int tensor of shape ``[2]``; equal seeds give equal images.  The output
    is ``work_height`` tall and keeps dark ink on light paper;
    resize it with the line geometry as usual.  The line pipeline runs the same two
    stages on whole batches, with the geometry's height as ``height``.
    """
    tf = _tf()
    cfg = config or DEFAULT_AUGMENT
    seed = tf.cast(seed, tf.int64)
    image = shrink_tall_crop(image, cfg.work_height)
    shape = tf.shape(image)
    x, w = augment_geometry_batch(image[None], shape[:1], shape[1:2], seed, cfg, height=cfg.work_height)
    x = augment_batch(x, w, seed + tf.constant([3, 31], tf.int64), cfg)
    return x[0, :, : w[0]]


def augment_page(image, seed, config: AugmentConfig | None = None):
    """Photometric augmentation of a page, uint8 ``[H, W, 1]`` -> same shape: boxes stay valid.

    Strokes and blur are left out (at page scale they would thin or smear small text)."""
    tf = _tf()
    cfg = (config or DEFAULT_AUGMENT).replace(p_stroke=0.0, p_blur=0.0)
    return augment_batch(image[None], tf.shape(image)[1:2], seed, cfg)[0]
