"""The handwritten-area model: config, bundle round trip, post-processing, export, training."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from htr_tf.errors import ConfigError, DataError, ModelError
from htr_tf.models.layout_common import (FCNConfig, area_resize, resize_fit, soft_box_mask, tf_area_resize,
                                         tf_resize_fit)
from htr_tf.models.paragraph import (ParagraphConfig, ParagraphModel, export_paragraph,
                                     paragraph_box_from_mask, tf_paragraph_box_from_mask)

tf = pytest.importorskip("tensorflow")


# -- tiny form pages drawn with cv2 (shared with test_lines.py) --------------------------------------
def draw_form(seed: int, height: int = 480, width: int = 360, header: bool = True
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """A page with an optional printed header and 3-6 handwriting-like lines.

    Returns (page, line boxes [N, 4], word boxes [M, 4], word_line [M]); boxes are the ink's.
    """
    import cv2

    rng = random.Random(seed)
    page = np.full((height, width), 245, np.uint8)
    if header:
        cv2.putText(page, "Sentence Database", (20, 30), cv2.FONT_HERSHEY_PLAIN, 1.0, 20, 1, cv2.LINE_AA)
        cv2.line(page, (10, 45), (width - 10, 45), 20, 2)
    lines, words, word_line = [], [], []
    y = 90 if header else 40
    for k in range(rng.randint(3, 6)):
        x = 20 + rng.randint(0, 20)
        lb = []
        for _ in range(rng.randint(2, 4)):
            text = "".join(rng.choice("abcdefghklmnopqrstuvwy") for _ in range(rng.randint(2, 6)))
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, 0.8, 2)
            if x + tw > width - 15:
                break
            cv2.putText(page, text, (x, y), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, 0.8, 30, 2, cv2.LINE_AA)
            ink = np.argwhere(page[max(0, y - th - 6): y + base + 6, x - 2: x + tw + 4] < 140)
            if len(ink):
                y0, x0 = ink.min(0) + (max(0, y - th - 6), x - 2)
                y1, x1 = ink.max(0) + (max(0, y - th - 6), x - 2) + 1
                lb.append([x0, y0, x1, y1])
                words.append([x0, y0, x1, y1])
                word_line.append(len(lines))
            x += tw + rng.randint(10, 18)
        if lb:
            b = np.array(lb, np.float32)
            lines.append([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()])
        y += rng.randint(36, 46)
        if y > height - 30:
            break
    return page, np.array(lines, np.float32), np.array(words, np.float32).reshape(-1, 4), word_line


def make_form_records(out: Path, splits: dict[str, int] | None = None, seed: int = 0) -> Path:
    """A tiny form record set of :func:`draw_form` pages (every third page has no header)."""
    from htr_tf.charset import Charset
    from htr_tf.data.records import FormExample, RecordSetWriter
    from htr_tf.fileio import encode_png
    from htr_tf.geometry import union_box

    splits = splits or {"train": 6, "validation": 2, "test": 3}
    with RecordSetWriter(out, source="test", charset=Charset(), per_shard=8) as w:
        i = 0
        for split, n in splits.items():
            for _ in range(n):
                page, lines, words, word_line = draw_form(seed + i, header=i % 3 != 2)
                w.add_form(split, FormExample(
                    id=f"{split}-{i:03d}", image_png=encode_png(page), height=page.shape[0], width=page.shape[1],
                    paragraph_box=union_box(lines), line_boxes=lines, line_ids=[f"l{k}" for k in range(len(lines))],
                    line_texts=["x"] * len(lines), word_boxes=words, word_texts=["x"] * len(words),
                    word_line=word_line, source="test"))
                i += 1
    return out


@pytest.fixture(scope="session")
def form_records(tmp_path_factory) -> Path:
    return make_form_records(tmp_path_factory.mktemp("forms") / "tiny")


def ink_model(height, width: int, stride: int, kernel: tuple[int, int], threshold: float = 0.08):
    """A hand-set Keras stand-in for a layout net: ``mask = sigmoid(k * (local ink density - t))``
    at ``stride`` (so a test's map follows the page's ink, unlike an untrained net's)."""
    import keras

    image = keras.Input((height, width, 1), name="image")
    x = keras.layers.AveragePooling2D(stride)(image)
    conv = keras.layers.Conv2D(1, kernel, padding="same", name="density")
    x = keras.layers.Activation("sigmoid", name="mask")(conv(x))
    k = 60.0
    conv.set_weights([np.full((*kernel, 1, 1), k / (kernel[0] * kernel[1]), np.float32),
                      np.array([-k * threshold], np.float32)])
    return keras.Model(image, {"mask": x})


@pytest.fixture(scope="module")
def tiny_paragraph():
    import keras

    keras.utils.set_random_seed(0)
    return ParagraphModel.create(ParagraphConfig.tiny(), {"name": "tiny"})


# -- config -------------------------------------------------------------------------------------------
def test_config_round_trip_and_errors():
    c = ParagraphConfig.tiny()
    d = json.loads(json.dumps(c.to_dict()))
    assert ParagraphConfig.from_dict(d) == c
    assert isinstance(ParagraphConfig.from_dict(d).fcn, FCNConfig)
    with pytest.raises(ConfigError, match="unknown key"):
        ParagraphConfig.from_dict({"input_hieght": 64})
    with pytest.raises(ConfigError, match="multiple of the network's stride"):
        ParagraphConfig(input_height=66, input_width=48, fcn=FCNConfig(filters=(4, 8)))
    with pytest.raises(ConfigError, match="out_stride"):
        FCNConfig(filters=(4, 8), out_stride=8)
    with pytest.raises(ConfigError, match="threshold"):
        ParagraphConfig(threshold=1.5)


def test_keras_model_config_and_keras_file_round_trip(tiny_paragraph, tmp_path):
    import keras

    model = tiny_paragraph.model
    clone = keras.Model.from_config(model.get_config())
    assert clone.count_params() == model.count_params()
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    x = np.random.default_rng(0).random((2, 64, 48, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded(x)["mask"], model(x)["mask"], atol=1e-6)
    assert model(x)["mask"].shape == (2, 32, 24, 1)


def test_bundle_round_trip_and_errors(tiny_paragraph, tmp_path):
    page = np.full((300, 220), 250, np.uint8)
    page[100:140, 30:190] = 20
    tiny_paragraph.save(tmp_path / "p")
    meta = json.loads((tmp_path / "p" / "htr.json").read_text())
    assert meta["kind"] == "paragraph" and meta["format_version"] == 1 and meta["input"]["height"] == 64
    loaded = ParagraphModel.load(tmp_path / "p")
    assert loaded.config == tiny_paragraph.config and loaded.info == {"name": "tiny"}
    b1, s1 = tiny_paragraph.detect(page)
    b2, s2 = loaded.detect(page)
    np.testing.assert_allclose(b1, b2, atol=1e-4)
    assert b1.shape == (4,) and (b1 >= 0).all() and b1[2] <= 220 and b1[3] <= 300
    with pytest.raises(ModelError, match="no paragraph bundle"):
        ParagraphModel.load(tmp_path / "missing")
    meta["kind"] = "lines"
    (tmp_path / "p" / "htr.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="expected 'paragraph'"):
        ParagraphModel.load(tmp_path / "p")
    with pytest.raises(DataError, match="2-D uint8"):
        tiny_paragraph.detect(page.astype(np.float32))


# -- pre/post-processing ------------------------------------------------------------------------------
def test_resize_numpy_and_tf_agree():
    rng = np.random.default_rng(1)
    page = rng.integers(0, 256, (517, 391)).astype(np.uint8)
    for H, W in ((64, 48), (384, 256), (1024, 800)):
        a, s = resize_fit(page, H, W)
        b, s2 = tf_resize_fit(tf.constant(page), H, W)
        assert np.abs(a.astype(int) - b.numpy().astype(int)).max() <= 1
        np.testing.assert_allclose(s, s2.numpy(), rtol=1e-6)
    for oh, ow in ((100, 80), (517, 391), (600, 500), (33, 391)):
        a, s = area_resize(page, oh, ow)
        b, s2 = tf_area_resize(tf.constant(page), oh, ow)
        assert a.shape == (oh, ow) and np.abs(a.astype(int) - b.numpy().astype(int)).max() <= 1
        np.testing.assert_allclose(s, s2.numpy(), rtol=1e-6)


def test_soft_mask_and_box_recover_sub_cell_edges():
    box = np.array([10.5, 7.25, 41.0, 30.75], np.float32)   # map cells
    m = soft_box_mask(box[None], 40, 50, stride=1)
    assert m[8, 20] == 1.0 and m[20, 10] == pytest.approx(0.5) and m[7, 20] == pytest.approx(0.75)
    found, score = paragraph_box_from_mask(m, 0.5, open_size=3)
    np.testing.assert_allclose(found, box, atol=1e-5)
    assert 0.9 < score <= 1.0
    # stride: boxes are given in input pixels
    np.testing.assert_allclose(soft_box_mask(box[None] * 4, 40, 50, stride=4), m, atol=1e-6)
    # a speck far away is removed by the opening
    m[2, 2] = 1.0
    np.testing.assert_allclose(paragraph_box_from_mask(m, 0.5, 3)[0], box, atol=1e-5)
    assert paragraph_box_from_mask(np.zeros((10, 10)), 0.5, 3) == (None, 0.0)
    # a faint blob (peak 0.6) stretches the box unless parts need a peak of 0.8
    m[30:36, 2:8] = 0.6
    assert paragraph_box_from_mask(m, 0.5, 3)[0][0] == pytest.approx(2.4)   # edge cell 60 % covered
    np.testing.assert_allclose(paragraph_box_from_mask(m, 0.5, 3, min_peak=0.8)[0], box, atol=1e-5)


def test_tf_postprocessing_equals_numpy():
    rng = np.random.default_rng(2)
    for k in range(20):
        h, w = int(rng.integers(8, 60)), int(rng.integers(8, 60))
        p = rng.random((h, w)).astype(np.float32) * (rng.random((h, w)) < 0.05)
        y0, x0 = int(rng.integers(0, h - 3)), int(rng.integers(0, w - 3))
        p[y0:y0 + int(rng.integers(1, 20)), x0:x0 + int(rng.integers(1, 30))] = rng.uniform(0.4, 1.0)
        for open_size, min_peak in ((0, 0.0), (3, 0.0), (3, 0.8), (0, 0.9)):
            box, score = paragraph_box_from_mask(p, 0.5, open_size, min_peak)
            tb, ts, found = tf_paragraph_box_from_mask(tf.constant(p), 0.5, open_size, min_peak)
            assert bool(found) == (box is not None)
            if box is not None:
                np.testing.assert_allclose(tb.numpy(), box, atol=1e-5)
                assert float(ts) == pytest.approx(score, abs=1e-5)


def test_empty_page_gives_the_whole_page(tiny_paragraph):
    import keras

    zero = ParagraphModel(keras.models.clone_model(tiny_paragraph.model), tiny_paragraph.config)
    zero.model.set_weights([np.zeros_like(w) for w in tiny_paragraph.model.get_weights()])
    zero.model.get_layer("logits").set_weights([np.zeros((1, 1, 4, 1)), np.full((1,), -5.0)])
    box, score = zero.detect(np.full((90, 70), 255, np.uint8))
    np.testing.assert_array_equal(box, [0, 0, 70, 90])
    assert score == 0.0


# -- export ---------------------------------------------------------------------------------------------
def test_savedmodel_matches_keras(tmp_path):
    # a stand-in net whose mask follows the ink: real boxes to compare, pages of several sizes
    cfg = ParagraphConfig(input_height=128, input_width=96, fcn=FCNConfig(filters=(4, 8), out_stride=2))
    model = ParagraphModel(ink_model(128, 96, 2, (5, 5)), cfg)
    out = export_paragraph(model, tmp_path / "exp" / "1")
    loaded = tf.saved_model.load(str(out))
    assert {"serving_default", "detect", "metadata"} <= set(loaded.signatures)
    meta = json.loads(loaded.signatures["metadata"]()["json"].numpy())
    assert meta["kind"] == "paragraph" and (out / "assets" / "htr.json").exists()
    for seed, size in ((0, (480, 360)), (1, (600, 300)), (2, (200, 300))):
        page = draw_form(seed, *size)[0]
        res = loaded.signatures["serving_default"](image=tf.constant(page))
        box, score = model.detect(page)
        assert bool(res["found"]) and score > 0.5
        assert 0.2 < (box[2] - box[0]) / size[1] < 0.99      # a real area, not the whole page
        # in-graph resizing differs by at most a gray level: the boxes by a fraction of a map cell
        np.testing.assert_allclose(res["box"].numpy(), box, atol=0.05 * size[0] / 64)
        assert float(res["score"]) == pytest.approx(score, abs=0.02)


# -- training -------------------------------------------------------------------------------------------
def test_paragraph_sample_targets_cover_the_lines(form_records):
    from htr_tf.train.layout import PageAugmentConfig, load_pages, paragraph_sample
    from htr_tf.train.recognizer import DataSpec

    pages = load_pages([DataSpec(str(form_records), "train")], lambda ex, h, w: 1.0)
    cfg = ParagraphConfig(input_height=128, input_width=96, fcn=FCNConfig(filters=(4, 8), out_stride=2))
    x, y = paragraph_sample(pages[0], cfg, None, np.random.default_rng(0))
    assert x.shape == (128, 96) and x.dtype == np.uint8 and y.shape == (64, 48)
    box, _ = paragraph_box_from_mask(y, 0.5, 0)
    s = min(128 / 480, 96 / 360)
    np.testing.assert_allclose(box * 2, pages[0].area * s, atol=0.6)
    rng = np.random.default_rng(1)
    for _ in range(5):  # augmented: the target stays a sensible area on the canvas
        x, y = paragraph_sample(pages[1], cfg, PageAugmentConfig(p_rotate=1.0, p_crop_area=0.5), rng)
        assert 0.02 < y.mean() < 0.9 and x.shape == (128, 96)


def test_train_paragraph_smoke_and_resume(form_records, tmp_path):
    from htr_tf.train.layout import ParagraphTrainConfig, train_paragraph

    cfg = ParagraphTrainConfig(model=ParagraphConfig.tiny(), data=(f"{form_records}:train",),
                               batch_size=2, epochs=1, steps_per_epoch=2, warmup_steps=0, cache_height=128,
                               workers=1)
    r = train_paragraph(cfg, tmp_path / "run", verbose=0)
    assert r.best is not None and r.last is not None and len(r.history) == 1
    assert "val_mean_iou" in r.history[0]
    bundle = ParagraphModel.load(r.best)
    assert bundle.info["metrics"]["val_mean_iou"] == pytest.approx(r.history[0]["val_mean_iou"])
    r2 = train_paragraph(cfg.replace(epochs=2), tmp_path / "run", verbose=0)  # resumes at epoch 2
    assert [h["epoch"] for h in r2.history] == [1, 2]


def test_evaluate_paragraph_reports_iou(tiny_paragraph, form_records):
    from htr_tf.layout_eval import evaluate_paragraph

    rep = evaluate_paragraph(tiny_paragraph, form_records, split="test")
    assert rep["pages"] == 3 and len(rep["per_page"]) == 3
    assert 0.0 <= rep["mean_iou"] <= 1.0 and rep["min_iou"] <= rep["mean_iou"]
    with pytest.raises(DataError, match="no forms for split"):
        evaluate_paragraph(tiny_paragraph, form_records, split="nope")
