"""Augmentation: shapes and dtypes, determinism, legibility guards, the identity case."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import render_text_line
from htr_tf.errors import ConfigError

tf = pytest.importorskip("tensorflow")

from htr_tf.data.augment import (AugmentConfig, augment_batch, augment_geometry_batch,  # noqa: E402
                                 augment_line, augment_page, shrink_tall_crop)
from htr_tf.geometry import LineGeometry, tf_resize_line  # noqa: E402


@pytest.fixture(scope="module")
def line() -> np.ndarray:
    img = render_text_line("Letters, Orders and Instructions", height=48, seed=1)
    return np.pad(img, ((10, 10), (20, 20)), constant_values=255)[:, :, None]


def all_on(**changes) -> AugmentConfig:
    return AugmentConfig(**{f.name: 1.0 for f in dataclasses.fields(AugmentConfig)
                            if f.name.startswith("p_")}).replace(**changes)


def test_augment_line_keeps_dtype_and_changes_pixels(line):
    out = augment_line(tf.constant(line), tf.constant([1, 2]), all_on()).numpy()
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 1
    assert out.shape[0] == AugmentConfig().work_height
    ref, _ = tf_resize_line(tf.constant(line), LineGeometry(height=64))
    assert out.shape != tuple(ref.shape) or not np.array_equal(out, ref.numpy())
    assert out.min() < 90 and np.median(out) > out.min() + 100  # dark ink on light paper


def test_same_seed_same_image_other_seed_other_image(line):
    f = lambda s: augment_line(tf.constant(line), s)  # noqa: E731
    a, b, c = f(tf.constant([5, 6])), f(tf.constant([5, 6])), f(tf.constant([5, 7]))
    assert np.array_equal(a.numpy(), b.numpy())
    assert a.shape != c.shape or not np.array_equal(a.numpy(), c.numpy())


def test_switched_off_it_is_a_plain_resize(line):
    x = tf.constant(line[None])
    h, w = tf.constant([line.shape[0]]), tf.constant([line.shape[1]])
    out, width = augment_geometry_batch(x, h, w, tf.constant([0, 0]), AugmentConfig.off(), height=32)
    # the line pipeline trims margins before augmenting, so compare with the untrimmed resize
    ref, ref_w = tf_resize_line(tf.constant(line), LineGeometry(height=32, trim=False))
    assert int(width[0]) == int(ref_w)
    diff = np.abs(out.numpy()[0, :, : int(width[0])].astype(float) - ref.numpy().astype(float))
    assert diff.mean() < 6.0  # bilinear vs area resampling of the same geometry
    same = augment_batch(out, width, tf.constant([0, 0]), AugmentConfig.off())
    assert np.array_equal(same.numpy(), out.numpy())


def test_new_margins_never_cut_ink(line):
    cfg = AugmentConfig.off().replace(p_affine=1.0, p_margin=1.0, margin_scale=(0.0, 0.2), margin_add=(0.0, 0.02))
    x = tf.constant(line[None])
    h, w = tf.constant([line.shape[0]]), tf.constant([line.shape[1]])
    for k in range(8):
        out, width = augment_geometry_batch(x, h, w, tf.constant([k, 1]), cfg, height=40)
        img = out.numpy()[0, :, : int(width[0]), 0]
        ink = img < 128
        assert ink.any()
        assert not ink[0].any() and not ink[-1].any() and not ink[:, 0].any() and not ink[:, -1].any()
        ys, xs = np.nonzero(ink)
        assert ys.max() - ys.min() > 0.6 * 40  # tight margins: the text fills the height


def test_batch_padding_stays_paper_and_widths_follow_the_floor(line):
    x = tf.constant(np.stack([line, np.full_like(line, 255)]))
    h = tf.constant([line.shape[0], line.shape[0]])
    w = tf.constant([line.shape[1], line.shape[1] // 3])
    out, width = augment_geometry_batch(x, h, w, tf.constant([3, 4]), all_on(), height=32,
                                        width_floor=lambda ws: tf.fill(tf.shape(ws), 700))
    assert out.dtype == tf.uint8 and out.shape[1] == 32 and list(width.numpy()) == [700, 700]
    out2, width2 = augment_geometry_batch(x, h, w, tf.constant([3, 4]), all_on(), height=32)
    assert width2[1] < width2[0] and (out2.numpy()[1, :, int(width2[1]):] == 255).all()
    y = augment_batch(out2, width2, tf.constant([1, 1]), all_on()).numpy()
    assert y.shape == out2.shape and (y[1, :, int(width2[1]):] == 255).all()
    assert not np.array_equal(y, out2.numpy())


def test_contrast_never_falls_below_the_minimum(line):
    cfg = AugmentConfig.off().replace(p_ink=1.0)
    x = tf.constant(np.repeat(line[None], 16, axis=0))
    w = tf.fill([16], line.shape[1])
    y = augment_batch(x, w, tf.constant([9, 9]), cfg).numpy().astype(int)
    paper = np.median(y, axis=(1, 2, 3))
    ink = y.min(axis=(1, 2, 3))
    assert (paper - ink >= cfg.min_contrast - 2).all()


def test_binarised_lines_are_ink_and_white_paper(line):
    cfg = AugmentConfig.off().replace(p_binarize=1.0, binarize_edge=(1.0, 1.0))
    gray = line.astype(np.float32)
    gray = np.clip(150 + (gray - 255) * 0.45 + np.linspace(-15, 15, line.shape[1])[None, :, None], 0, 255)
    x = tf.constant(np.repeat(gray.astype(np.uint8)[None], 4, axis=0))
    w = tf.constant([line.shape[1]] * 3 + [line.shape[1] // 2])
    y = augment_batch(x, w, tf.constant([2, 3]), cfg).numpy()
    extreme = (y <= 5) | (y >= 250)
    assert extreme.mean() > 0.97  # two levels but for a few edge pixels
    ink = line[..., 0] < 128
    for i in range(3):
        assert ((y[i, ..., 0] < 128) == ink).mean() > 0.95  # the strokes stay where they were
    assert (y[3, :, line.shape[1] // 2:] == 255).all()  # padding stays paper
    none = augment_batch(x, w, tf.constant([2, 3]), cfg.replace(p_binarize=0.0)).numpy()
    inside = np.arange(x.shape[2])[None, None, :, None] < w.numpy()[:, None, None, None]
    assert np.array_equal(none, np.where(inside, x.numpy(), 255))  # p_binarize 0 changes nothing


def test_tall_crops_are_shrunk_first():
    tall = tf.fill([400, 900, 1], tf.constant(200, tf.uint8))
    assert shrink_tall_crop(tall, 64).shape == (128, 288, 1)
    assert shrink_tall_crop(tall[:150], 64).shape == (150, 900, 1)


def test_page_augmentation_keeps_the_shape():
    page = np.full((120, 90, 1), 230, np.uint8)
    page[40:60, 10:80] = 20
    out = augment_page(tf.constant(page), tf.constant([0, 1]), all_on()).numpy()
    assert out.shape == page.shape and out.dtype == np.uint8
    assert out[45:55, 15:75].mean() < out[:30].mean() - 100  # the ink did not move


def test_config_is_checked():
    with pytest.raises(ConfigError, match="p_blur"):
        AugmentConfig.from_dict({"p_blur": 2.0})
    with pytest.raises(ConfigError, match="slant"):
        AugmentConfig.from_dict({"slant": [0.3, -0.3]})
    with pytest.raises(ConfigError, match="unknown key"):
        AugmentConfig.from_dict({"p_rainbow": 0.1})
    cfg = AugmentConfig.from_dict({"slant": [-0.2, 0.2], "p_noise": 0.0})
    assert cfg.slant == (-0.2, 0.2) and AugmentConfig.from_dict(cfg.to_dict()) == cfg
