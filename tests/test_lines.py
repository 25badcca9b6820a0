"""The line detector: post-processing (numpy and TF), bundle, export, metrics, training, CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from htr_tf.errors import ConfigError, DataError, ModelError
from htr_tf.layout_eval import (average_precision, coco_map, line_metrics, match_detections,
                                precision_recall)
from htr_tf.models.layout_common import FCNConfig, soft_box_mask
from htr_tf.models.lines import (LineDetector, LineDetectorConfig, crop_box, export_lines,
                                 line_boxes_from_mask, tf_connected_components, tf_line_boxes_from_mask)
from test_paragraph import draw_form, ink_model, make_form_records

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def form_records(tmp_path_factory):
    return make_form_records(tmp_path_factory.mktemp("forms") / "tiny")


@pytest.fixture(scope="module")
def tiny_lines():
    import keras

    keras.utils.set_random_seed(0)
    return LineDetector.create(LineDetectorConfig.tiny(), {"name": "tiny"})


def bands(boxes: np.ndarray, fraction: float) -> np.ndarray:
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    half = (boxes[:, 3] - boxes[:, 1]) * fraction / 2
    return np.stack([boxes[:, 0], cy - half, boxes[:, 2], cy + half], 1)


# -- metrics (hand-computed) ------------------------------------------------------------------------
def test_average_precision_hand_computed():
    gt = [np.array([[0, 0, 10, 10], [0, 20, 10, 30]], np.float32)]
    # scores 0.9 (TP), 0.8 (FP), 0.7 (TP): precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    det = [(np.array([[0, 0, 10, 10], [50, 50, 60, 60], [0, 21.5, 10, 30]], np.float32),
            np.array([0.9, 0.8, 0.7]))]
    # 101-point interpolation: recall 0.00..0.50 (51 points) -> 1, 0.51..1.00 (50 points) -> 2/3
    assert average_precision(det, gt, 0.5) == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)
    # the third box has IoU 0.85 with its line: a TP up to 0.85, then only the first box matches
    assert average_precision(det, gt, 0.9) == pytest.approx(51 / 101)
    assert coco_map(det, gt) == pytest.approx((8 * (51 + 50 * 2 / 3) / 101 + 2 * 51 / 101) / 10)
    pr = precision_recall(det, gt, 0.5)
    assert pr["precision"] == pytest.approx(2 / 3) and pr["recall"] == 1.0
    assert np.isnan(average_precision([(np.zeros((0, 4)), np.zeros(0))], [np.zeros((0, 4))]))
    assert average_precision([(np.zeros((0, 4)), np.zeros(0))], gt) == 0.0


def test_matching_takes_the_best_unmatched_box_by_score():
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 12]], np.float32)
    boxes = np.array([[0, 0, 10, 11], [0, 0, 10, 10]], np.float32)
    # the higher-scoring second box takes gt 0 (IoU 1), the first then takes gt 1
    np.testing.assert_array_equal(match_detections(boxes, np.array([0.5, 0.9]), gt, 0.5), [True, True])
    # a duplicate of one line is a false positive
    np.testing.assert_array_equal(match_detections(gt[:1].repeat(2, 0), np.array([0.9, 0.8]), gt[:1], 0.5),
                                  [True, False])
    m = line_metrics([(gt, np.array([1.0, 1.0]))], [gt])
    assert m["recall50"] == 1.0 and m["map"] == 1.0


# -- post-processing ------------------------------------------------------------------------------------
def test_bands_become_full_line_boxes_in_reading_order():
    cfg = LineDetectorConfig(band_fraction=0.4)
    lines = np.array([[10, 60, 200, 80], [12, 20, 150, 40], [8, 100.5, 190, 121]], np.float32)
    prob = soft_box_mask(bands(lines, 0.4), 140, 220)
    boxes, scores = line_boxes_from_mask(prob, cfg)
    assert len(boxes) == 3
    np.testing.assert_allclose(boxes[:, [0, 2]], lines[[1, 0, 2]][:, [0, 2]], atol=1.0)   # top to bottom
    np.testing.assert_allclose(boxes[:, [1, 3]], lines[[1, 0, 2]][:, [1, 3]], atol=1.6)
    assert (scores > 0.8).all()


def test_pieces_of_one_line_merge_and_neighbours_do_not():
    cfg = LineDetectorConfig(band_fraction=0.4, merge_gap=2.0)
    prob = np.zeros((100, 300), np.float32)
    prob[20:28, 10:100] = 1.0      # one line broken at a word gap
    prob[21:29, 115:250] = 1.0
    prob[45:53, 10:240] = 1.0      # the next line
    prob[80:88, 10:60] = 1.0       # a line far to the left of ...
    prob[80:88, 200:260] = 1.0     # ... a piece too far away to merge (gap 140 > 2 x 20)
    boxes, _ = line_boxes_from_mask(prob, cfg)
    assert len(boxes) == 4
    np.testing.assert_allclose(boxes[0, [0, 2]], [10, 250])
    np.testing.assert_allclose(boxes[1, [0, 2]], [10, 240])
    assert boxes[1, 1] < 45 and boxes[1, 3] > 53          # grown back to the full line height
    assert line_boxes_from_mask(np.zeros((10, 10)), cfg)[0].shape == (0, 4)


def test_tf_connected_components_match_opencv():
    import cv2

    rng = np.random.default_rng(0)
    for _ in range(10):
        m = rng.random((int(rng.integers(5, 50)), int(rng.integers(5, 50)))) < 0.45
        n, ref = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
        got = tf_connected_components(tf.constant(m)).numpy()
        assert ((got > 0) == m).all()
        pairs = {(int(a), int(b)) for a, b in zip(ref[m], got[m])}
        assert len(pairs) == n - 1 == len({a for a, _ in pairs}) == len({b for _, b in pairs})


def test_tf_postprocessing_equals_numpy():
    cfg = LineDetectorConfig()
    rng = np.random.default_rng(3)
    for _ in range(15):
        h, w = int(rng.integers(10, 120)), int(rng.integers(10, 200))
        p = (rng.random((h, w)) * (rng.random((h, w)) < 0.05)).astype(np.float32)
        for _ in range(int(rng.integers(0, 8))):
            y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
            p[y:y + int(rng.integers(1, 9)), x:x + int(rng.integers(1, 90))] = rng.uniform(0.3, 1.0)
        b1, s1 = line_boxes_from_mask(p, cfg)
        b2, s2 = tf_line_boxes_from_mask(tf.constant(p), cfg)
        np.testing.assert_allclose(b2.numpy(), b1, atol=1e-3)
        np.testing.assert_allclose(s2.numpy(), s1, atol=1e-5)


def test_crop_box_margin_and_fallback():
    assert crop_box((100, 200), None, 0.1) == (0, 0, 200, 100)
    assert crop_box((100, 200), (50, 20, 150, 60), 0.1) == (40, 10, 160, 70)
    assert crop_box((100, 200), (190, 90, 400, 300), 0.1) == (169, 69, 200, 100)
    assert crop_box((100, 200), (10, 10, 10.5, 10.5), 0.0) == (0, 0, 200, 100)


# -- the bundle ---------------------------------------------------------------------------------------
def test_config_and_bundle_round_trip(tiny_lines, tmp_path):
    import keras

    c = LineDetectorConfig.from_dict(json.loads(json.dumps(tiny_lines.config.to_dict())))
    assert c == tiny_lines.config
    with pytest.raises(ConfigError, match="band_fraction"):
        LineDetectorConfig(band_fraction=0.0)
    with pytest.raises(ConfigError, match="unknown key"):
        LineDetectorConfig.from_dict({"fcn": {"filtres": [4, 8]}})
    clone = keras.Model.from_config(tiny_lines.model.get_config())
    assert clone.count_params() == tiny_lines.count_params()
    tiny_lines.save(tmp_path / "l")
    loaded = LineDetector.load(tmp_path / "l")
    page, lines, _, _ = draw_form(1)
    region = np.array([lines[:, 0].min(), lines[:, 1].min(), lines[:, 2].max(), lines[:, 3].max()])
    b1, s1 = tiny_lines.detect(page, region)
    b2, s2 = loaded.detect(page, region)
    np.testing.assert_allclose(b1, b2, atol=1e-4)
    assert b1.ndim == 2 and b1.shape[1] == 4 and len(s1) == len(b1)
    x = np.random.default_rng(0).random((1, 96, 128, 1)).astype(np.float32)
    assert loaded.model(x)["mask"].shape == (1, 48, 64, 1)   # any height (multiple of the stride)
    with pytest.raises(ModelError, match="expected 'lines'"):
        from htr_tf.models.paragraph import ParagraphConfig, ParagraphModel

        ParagraphModel.create(ParagraphConfig.tiny()).save(tmp_path / "p")
        LineDetector.load(tmp_path / "p")
    with pytest.raises(DataError, match="region"):
        tiny_lines.detect(page, (1, 2, 3))


def test_detect_maps_boxes_back_to_the_page(tiny_lines):
    """A map equal to the targets must give the page's line boxes back (pre/post-processing only)."""
    det = tiny_lines
    page, lines, _, _ = draw_form(4)
    region = np.array([lines[:, 0].min(), lines[:, 1].min(), lines[:, 2].max(), lines[:, 3].max()])
    x, origin, (sx, sy) = det.preprocess(page, region)
    s = det.config.fcn.out_stride
    inp = (lines - np.array([*origin, *origin])) * np.array([sx, sy, sx, sy])
    prob = soft_box_mask(bands(inp, det.config.band_fraction), x.shape[0] // s, x.shape[1] // s, s)
    boxes, _ = det.postprocess(prob, origin, (sx, sy), page.shape)
    assert len(boxes) == len(lines)
    np.testing.assert_allclose(boxes, lines, atol=2.0 / sx + 1)


def test_savedmodel_matches_keras(tmp_path):
    # a stand-in net whose band map is the smoothed ink (wide kernel): real lines to compare
    cfg = LineDetectorConfig(input_width=256, max_input_height=512, fcn=FCNConfig(filters=(4, 8)))
    det = LineDetector(ink_model(None, 256, 2, (3, 15), threshold=0.1), cfg)
    out = export_lines(det, tmp_path / "exp" / "1")
    loaded = tf.saved_model.load(str(out))
    assert {"serving_default", "detect", "detect_page", "metadata"} <= set(loaded.signatures)
    assert json.loads(loaded.signatures["metadata"]()["json"].numpy())["kind"] == "lines"
    assert (out / "assets" / "htr.json").exists()
    for seed in range(3):
        page, lines, _, _ = draw_form(seed)
        region = np.array([lines[:, 0].min(), lines[:, 1].min(), lines[:, 2].max(), lines[:, 3].max()], np.float32)
        res = loaded.signatures["detect"](image=tf.constant(page), region=tf.constant(region))
        boxes, scores = det.detect(page, region)
        assert len(boxes) >= len(lines) - 1 and res["boxes"].shape[0] == len(boxes)
        np.testing.assert_allclose(res["boxes"].numpy(), boxes, atol=3.0)
        np.testing.assert_allclose(res["scores"].numpy(), scores, atol=0.02)
        whole = loaded.signatures["detect_page"](image=tf.constant(page))
        b_page, _ = det.detect(page)
        assert whole["boxes"].shape[0] == len(b_page)
        np.testing.assert_allclose(whole["boxes"].numpy(), b_page, atol=3.0)


# -- training and CLI ----------------------------------------------------------------------------------
def test_lines_sample_targets_are_the_bands(form_records):
    from htr_tf.train.layout import PageAugmentConfig, lines_sample, load_pages
    from htr_tf.train.recognizer import DataSpec

    cfg = LineDetectorConfig.tiny()
    pages = load_pages([DataSpec(str(form_records), "train")], lambda ex, h, w: 1.0)
    x, y = lines_sample(pages[0], cfg, 256, None, np.random.default_rng(0))
    assert x.shape == (256, 128) and y.shape == (128, 64)
    boxes, _ = line_boxes_from_mask(y, cfg)
    assert len(boxes) == len(pages[0].lines)
    rng = np.random.default_rng(1)
    for _ in range(5):
        x, y = lines_sample(pages[2], cfg, 64, PageAugmentConfig(p_rotate=1.0), rng)
        assert x.shape == (64, 128) and y.shape == (32, 64) and y.max() <= 1.0


def test_train_lines_smoke(form_records, tmp_path):
    from htr_tf.train.layout import LinesTrainConfig, train_lines

    cfg = LinesTrainConfig(model=LineDetectorConfig.tiny(), data=(f"{form_records}:train",), batch_size=2,
                           epochs=2, steps_per_epoch=2, warmup_steps=0, crop_height=64,
                           cache_area_width=160, workers=1, keep_epochs=1)
    LineDetector.create(LineDetectorConfig.tiny(), {"attribution": ["Data Z, CC BY 4.0"]}).save(tmp_path / "init")
    r = train_lines(cfg, tmp_path / "run", init=tmp_path / "init", verbose=0)
    assert r.best is not None and {"val_map", "val_recall50"} <= set(r.history[0])
    assert LineDetector.load(r.last).info["epoch"] == 2
    assert LineDetector.load(r.last).info["attribution"] == ["Data Z, CC BY 4.0"]   # CC BY travels on
    kept = sorted(p.name for p in (tmp_path / "run" / "epochs").iterdir())
    assert kept == ["epoch-002"] and LineDetector.load(tmp_path / "run" / "epochs" / "epoch-002").info["epoch"] == 2


def test_cli_parsers_evaluate_and_export(tiny_lines, form_records, tmp_path, capsys):
    from htr_tf.commands.layout_args import add_evaluate_parsers, add_export_parsers, add_train_parsers
    from htr_tf.models.paragraph import ParagraphConfig, ParagraphModel

    parser = argparse.ArgumentParser(prog="htr")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, add in (("train", add_train_parsers), ("evaluate", add_evaluate_parsers),
                      ("export", add_export_parsers)):
        add(sub.add_parser(name).add_subparsers(dest=f"{name}_command", required=True))
    a = parser.parse_args(["train", "lines", "--data", "R:train:0.5", "--out", "o", "--epochs", "3",
                           "--set", "model.input_width=256", "crop_height=64"])
    assert a.data == ["R:train:0.5"] and a.epochs == 3 and callable(a.func)
    from htr_tf.commands.layout_args import _set_dotted

    d = {"model": {"input_width": 384}, "crop_height": 384}
    for item in a.set:
        _set_dotted(d, item)
    assert d == {"model": {"input_width": 256}, "crop_height": 64}
    with pytest.raises(ConfigError, match="unknown key 'input_widht'"):
        _set_dotted(d, "model.input_widht=3")
    tiny_lines.save(tmp_path / "lines")
    ParagraphModel.create(ParagraphConfig.tiny()).save(tmp_path / "par")
    a = parser.parse_args(["evaluate", "lines", "--model", str(tmp_path / "lines"), "--data", str(form_records),
                           "--split", "test", "--area", str(tmp_path / "par"), "--quiet",
                           "--report", str(tmp_path / "r.json")])
    assert a.func(a) == 0
    out = capsys.readouterr().out
    assert "recall50" in out and "map" in out and "area from paragraph model" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["pages"] == 3 and len(rep["per_page"]) == 3
    a = parser.parse_args(["evaluate", "paragraph", "--model", str(tmp_path / "par"), "--data",
                           str(form_records), "--quiet"])
    assert a.func(a) == 0 and "mean_iou" in capsys.readouterr().out
    a = parser.parse_args(["export", "paragraph", "--model", str(tmp_path / "par"), "--out", str(tmp_path / "x")])
    assert a.func(a) == 0 and (tmp_path / "x" / "saved_model.pb").exists()


# -- the bundled models ----------------------------------------------------------------------------------
def _bundled(kind: str):
    from htr_tf.commands.layout_args import default_layout_model_path

    path = default_layout_model_path(kind)
    if not (path / "htr.json").exists():
        pytest.skip(f"no bundled {kind} model")
    return path


@pytest.fixture(scope="module")
def synthetic_form():
    """One synthetic IAM form at half resolution (the bundled fonts) with its line boxes."""
    from htr_tf.data.synth import PageTask, load_fonts, render_form
    from htr_tf.data.text import load_sentences

    sentences = load_sentences(None)
    form, page, _ = render_form(PageTask(index=3, seed=12345, writer=3, sentences=tuple(sentences[40:46]),
                                         fonts=tuple(load_fonts(None)), scale=0.5))
    lines = np.array([ln.box_xyxy() for ln in form.lines], np.float32)
    return page, lines


def test_bundled_models_find_the_lines_of_a_synthetic_form(synthetic_form):
    from htr_tf.geometry import box_iou, union_box
    from htr_tf.models.paragraph import ParagraphModel

    page, lines = synthetic_form
    par = ParagraphModel.load(_bundled("paragraph"))
    det = LineDetector.load(_bundled("lines"))
    assert par.info["evaluation"]["synthetic_test"]["mean_iou"] >= 0.95
    area = par.predict(page)
    assert box_iou(area, union_box(lines))[0, 0] > 0.85
    boxes, scores = det.detect(page, area)
    pr = precision_recall([(boxes, scores)], [lines], 0.5)
    assert pr["recall"] >= 0.8 and pr["precision"] >= 0.8
    assert (np.diff((boxes[:, 1] + boxes[:, 3]) / 2) > 0).all()          # reading order


@pytest.mark.slow
def test_bundled_savedmodels_match_keras(synthetic_form, tmp_path):
    from htr_tf.models.paragraph import ParagraphModel, export_paragraph

    page, _ = synthetic_form
    par = ParagraphModel.load(_bundled("paragraph"))
    det = LineDetector.load(_bundled("lines"))
    sp = tf.saved_model.load(str(export_paragraph(par, tmp_path / "paragraph" / "1")))
    sl = tf.saved_model.load(str(export_lines(det, tmp_path / "lines" / "1")))
    area = sp.signatures["detect"](image=tf.constant(page))["box"].numpy()
    np.testing.assert_allclose(area, par.predict(page), atol=4.0)
    res = sl.signatures["detect"](image=tf.constant(page), region=tf.constant(area))
    boxes, scores = det.detect(page, area)
    assert res["boxes"].shape[0] == len(boxes)
    np.testing.assert_allclose(res["boxes"].numpy(), boxes, atol=4.0)
