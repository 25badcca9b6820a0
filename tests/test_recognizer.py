"""The line recogniser model: config, architecture invariants, CTC loss and the saved bundle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from htr_tf.charset import Charset
from htr_tf.errors import ConfigError, ModelError
from htr_tf.geometry import LineGeometry
from htr_tf.recognize import line_batch, model_input
from htr_tf.models.recognizer import (
    Recognizer,
    RecognizerConfig,
    build_recognizer,
    ctc_loss,
    frame_lengths,
)

keras = pytest.importorskip("keras")

HEIGHT = 32
GEOMETRY = LineGeometry(height=HEIGHT, max_width=512, min_width=16, width_multiple=8)


def tiny(**changes) -> RecognizerConfig:
    return RecognizerConfig.tiny().replace(**changes)


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(1)
    return build_recognizer(tiny(), num_classes=12, height=HEIGHT)


def run(model, images, widths):
    out = model({"image": np.asarray(images, np.float32), "width": np.asarray(widths, np.int32)}, training=False)
    return np.asarray(out["log_probs"]), np.asarray(out["lengths"])


# -- config ------------------------------------------------------------------------------------
def test_config_round_trips_through_dict_and_yaml(tmp_path):
    cfg = RecognizerConfig(conv_filters=(8, 16), conv_pool=((2, 2), (2, 4)), separable_blocks=(1,),
                           rnn_type="gru", rnn_units=32, rnn_layers=3, dropout=0.1)
    assert RecognizerConfig.from_dict(cfg.to_dict()) == cfg
    cfg.save(tmp_path / "c.yaml")
    cfg.save(tmp_path / "c.json")
    assert RecognizerConfig.load(tmp_path / "c.yaml") == cfg
    assert RecognizerConfig.load(tmp_path / "c.json") == cfg
    assert cfg.width_downsample() == 8 and cfg.height_downsample() == 4
    assert RecognizerConfig().width_downsample() == 8


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match="unknown key.*rnn_cells"):
        RecognizerConfig.from_dict({"rnn_cells": 3})
    with pytest.raises(ConfigError, match="rnn_type"):
        RecognizerConfig.from_dict({"rnn_type": "transformer"})
    with pytest.raises(ConfigError, match="one pool per block"):
        RecognizerConfig.from_dict({"conv_filters": [8, 16], "conv_pool": [[2, 2]]})
    with pytest.raises(ConfigError, match="version"):
        RecognizerConfig.from_dict({"version": 99})
    with pytest.raises(ConfigError, match="separable_blocks"):
        RecognizerConfig.from_dict({"separable_blocks": [7]})


def test_geometry_must_pad_to_whole_frames():
    cfg = tiny(conv_pool=((2, 2), (2, 2), (2, 4)))  # width downsampling 16
    with pytest.raises(ConfigError, match="width_multiple=8 is not a multiple"):
        cfg.check_geometry(LineGeometry(width_multiple=8))
    cfg.check_geometry(LineGeometry(width_multiple=16))
    with pytest.raises(ConfigError, match="not a multiple"):
        Recognizer.create(cfg, Charset(), LineGeometry(width_multiple=8))


def test_frame_lengths_numpy_and_tensors_agree():
    import tensorflow as tf

    widths = np.array([1, 7, 8, 9, 100, 1024], np.int32)
    expected = np.ceil(widths / 8).astype(np.int32)
    assert np.array_equal(frame_lengths(widths, 8), expected)
    assert np.array_equal(tiny().frame_lengths(widths), expected)
    assert np.array_equal(tiny().frame_lengths(tf.constant(widths)).numpy(), expected)


# -- architecture invariants -------------------------------------------------------------------
@pytest.mark.parametrize("width", [16, 40, 64, 200, 256])
def test_frame_lengths_match_the_output_time_dimension(tiny_model, width):
    cfg = tiny()
    padded = GEOMETRY.padded_width(width)
    lp, lengths = run(tiny_model, np.random.rand(2, HEIGHT, padded, 1), [width, max(1, width // 2)])
    assert lp.shape == (2, padded // cfg.width_downsample(), 12)
    assert lengths.tolist() == cfg.frame_lengths(np.array([width, max(1, width // 2)])).tolist()
    assert lengths[0] == lp.shape[1]  # the widest line's frames fill the batch


def test_output_is_a_log_softmax(tiny_model):
    lp, _ = run(tiny_model, np.random.rand(1, HEIGHT, 64, 1), [64])
    assert np.allclose(np.exp(lp).sum(-1), 1.0, atol=1e-4)


@pytest.mark.parametrize("downsample", ["pool", "stride"])
def test_padding_does_not_change_valid_frames(downsample):
    keras.utils.set_random_seed(4)
    tiny_model = build_recognizer(tiny(downsample=downsample, conv_per_block=2, rnn_layers=2), 12, HEIGHT)
    rng = np.random.default_rng(0)
    line = rng.random((HEIGHT, 75, 1)).astype(np.float32)
    other = rng.random((HEIGHT, 140, 1)).astype(np.float32)
    a = np.zeros((1, HEIGHT, 80, 1), np.float32)
    a[0, :, :75] = line
    b = np.zeros((2, HEIGHT, 200, 1), np.float32)
    b[0, :, :75] = line
    b[1, :, :140] = other
    lp_a, len_a = run(tiny_model, a, [75])
    lp_b, len_b = run(tiny_model, b, [75, 140])
    n = int(len_a[0])
    assert n == len_b[0] == 10
    np.testing.assert_allclose(lp_a[0, :n], lp_b[0, :n], atol=1e-5)


def test_garbage_in_the_padding_is_masked(tiny_model):
    rng = np.random.default_rng(1)
    x = np.zeros((1, HEIGHT, 120, 1), np.float32)
    x[0, :, :60] = rng.random((HEIGHT, 60, 1))
    y = x.copy()
    y[0, :, 60:] = 1.0  # a client that pads with ink instead of paper
    lp_x, n = run(tiny_model, x, [60])
    lp_y, _ = run(tiny_model, y, [60])
    np.testing.assert_allclose(lp_x[0, : n[0]], lp_y[0, : n[0]], atol=1e-5)


@pytest.mark.parametrize("changes", [dict(rnn_type="gru"), dict(separable_blocks=(1, 2), conv_per_block=2),
                                     dict(batch_norm=False, projection=0, rnn_layers=2, conv_dropout=0.1)])
def test_architecture_variants_build_and_keep_the_contract(changes):
    cfg = tiny(**changes)
    model = build_recognizer(cfg, num_classes=9, height=HEIGHT)
    lp, lengths = run(model, np.random.rand(2, HEIGHT, 48, 1), [48, 20])
    assert lp.shape == (2, 6, 9) and lengths.tolist() == [6, 3]


def test_mixed_precision_keeps_log_probs_float32():
    from htr_tf.train.distribute import set_mixed_precision

    set_mixed_precision(True)
    try:
        model = build_recognizer(tiny(), num_classes=9, height=HEIGHT)
    finally:
        set_mixed_precision(False)
    assert model.get_layer("block1_conv1").compute_dtype == "float16"
    out = model({"image": np.random.rand(1, HEIGHT, 32, 1).astype(np.float32), "width": np.array([32], np.int32)})
    assert out["log_probs"].dtype == "float32" and out["lengths"].dtype == "int32"


# -- serialisation -------------------------------------------------------------------------------
def test_get_config_and_keras_file_round_trip(tiny_model, tmp_path):
    x = np.random.rand(2, HEIGHT, 96, 1).astype(np.float32)
    w = np.array([96, 50], np.int32)
    expected, lengths = run(tiny_model, x, w)

    clone = keras.Model.from_config(tiny_model.get_config())
    clone.set_weights(tiny_model.get_weights())
    np.testing.assert_allclose(run(clone, x, w)[0], expected, atol=1e-6)

    tiny_model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    lp, n = run(loaded, x, w)
    np.testing.assert_allclose(lp, expected, atol=1e-6)
    assert n.tolist() == lengths.tolist()


# -- CTC -----------------------------------------------------------------------------------------
def test_ctc_loss_uses_true_label_and_frame_lengths():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 10, 6)).astype(np.float32)
    log_probs = tf.nn.log_softmax(logits).numpy()
    labels = np.array([[1, 2, 2, 0, 0], [3, 0, 0, 0, 0]], np.int32)
    lengths = np.array([10, 4], np.int32)
    loss = np.asarray(ctc_loss(labels, log_probs, lengths))
    assert loss.shape == (2,) and np.all(np.isfinite(loss)) and np.all(loss > 0)
    # more label padding and garbage in frames past the length change nothing
    labels_more = np.pad(labels, ((0, 0), (0, 4)))
    garbage = log_probs.copy()
    garbage[1, 4:] = tf.nn.log_softmax(rng.normal(size=(6, 6)).astype(np.float32) * 10).numpy()
    np.testing.assert_allclose(np.asarray(ctc_loss(labels_more, garbage, lengths)), loss, rtol=1e-5)
    reference = tf.nn.ctc_loss(labels, logits, [3, 1], lengths, logits_time_major=False, blank_index=0)
    np.testing.assert_allclose(loss, reference.numpy(), rtol=1e-4)


# -- the bundle ----------------------------------------------------------------------------------
@pytest.fixture
def bundle() -> Recognizer:
    keras.utils.set_random_seed(2)
    return Recognizer.create(tiny(), Charset(), GEOMETRY, info={"note": "test", "metrics": {"val_cer": 0.5}})


def test_bundle_save_load_round_trip(bundle, tmp_path):
    from htr_tf.geometry import normalize

    crops = [np.full((40, 150), 255, np.uint8), np.full((30, 60), 255, np.uint8)]
    crops[0][10:30, 10:140] = 0
    images, widths = line_batch(crops, GEOMETRY)
    images = model_input(images, widths)
    expected, lengths = bundle.log_probs(images, widths)
    assert expected.shape[0] == 2 and lengths.tolist() == bundle.config.frame_lengths(widths).tolist()

    bundle.save(tmp_path / "rec")
    meta = json.loads((tmp_path / "rec" / "htr.json").read_text())
    assert meta["kind"] == "recognizer" and meta["format_version"] == 1
    assert set(meta) >= {"charset", "geometry", "config", "info"}
    loaded = Recognizer.load(tmp_path / "rec")
    assert loaded.config == bundle.config and loaded.charset == bundle.charset
    assert loaded.geometry == bundle.geometry and loaded.info["metrics"]["val_cer"] == 0.5
    lp, n = loaded.log_probs(images, widths)
    np.testing.assert_allclose(lp, expected, atol=1e-6)
    assert n.tolist() == lengths.tolist()
    # saving again over an existing bundle replaces it atomically, leaving no temp dirs
    loaded.save(tmp_path / "rec")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec"]
    assert normalize(np.array([255], np.uint8))[0] == 0.0


def test_bundle_load_errors_name_the_path(bundle, tmp_path):
    with pytest.raises(ModelError, match="nowhere"):
        Recognizer.load(tmp_path / "nowhere")
    bundle.save(tmp_path / "rec")
    meta_path = tmp_path / "rec" / "htr.json"
    meta = json.loads(meta_path.read_text())

    meta_path.write_text(json.dumps({**meta, "kind": "paragraph"}))
    with pytest.raises(ModelError, match="kind is 'paragraph'"):
        Recognizer.load(tmp_path / "rec")
    meta_path.write_text(json.dumps({**meta, "format_version": 7}))
    with pytest.raises(ModelError, match="format version 7"):
        Recognizer.load(tmp_path / "rec")
    meta_path.write_text("{not json")
    with pytest.raises(ModelError, match="corrupt"):
        Recognizer.load(tmp_path / "rec")
    meta_path.write_text(json.dumps(meta))
    (tmp_path / "rec" / "model.keras").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="model.keras"):
        Recognizer.load(tmp_path / "rec")


def test_log_probs_checks_its_inputs(bundle):
    from htr_tf.errors import DataError

    with pytest.raises(DataError, match="expected images"):
        bundle.log_probs(np.zeros((1, 10, 32, 1), np.float32), [32])
    with pytest.raises(DataError, match="widths"):
        bundle.log_probs(np.zeros((2, HEIGHT, 32, 1), np.float32), [32])
    lp, n = bundle.log_probs(np.zeros((2, HEIGHT, 32), np.float32), [32, 16])  # [B, H, W] accepted
    assert n.tolist() == [4, 2]


def test_xla_log_probs_equal_the_plain_ones_through_padded_shapes(bundle):
    """``jit=True`` pads the batch to a power of two and the width to XLA_WIDTH_STEP, so a few
    compiled programs serve every batch; what comes back is cut to the caller's batch."""
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (40, w), dtype=np.uint8) for w in (150, 60, 90)]
    images, widths = line_batch(crops, GEOMETRY)
    x = model_input(images, widths)
    plain, n = bundle.log_probs(x, widths)
    fast, m = bundle.log_probs(x, widths, jit=True)
    assert fast.shape == plain.shape and m.tolist() == n.tolist()
    for i, k in enumerate(n):
        np.testing.assert_allclose(fast[i, :k], plain[i, :k], atol=1e-4)
