"""SavedModel export: signatures equal the Keras model, metadata travels inside, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import render_text_line
from htr_tf.decode import GreedyDecoder
from htr_tf.errors import DataError, ModelError
from htr_tf.export import SIGNATURES, export_recognizer, load_exported
from htr_tf.fileio import decode_image, encode_png
from htr_tf.geometry import resize_line
from htr_tf.recognize import line_batch, model_input

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def recognizer(tiny_recognizer_dir):
    from htr_tf.models.recognizer import Recognizer

    return Recognizer.load(tiny_recognizer_dir)


@pytest.fixture(scope="module")
def exported(recognizer, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "recognizer" / "1"
    assert export_recognizer(recognizer, out) == out
    return load_exported(out)


def crops():
    lines = [("hello world", 48), ("Sir, yes", 40), ("a", 20), ("the of and to in a is that", 64)]
    return [render_text_line(t, height=h, seed=i) for i, (t, h) in enumerate(lines)]


def keras_reference(recognizer, gray_crops):
    images, w = line_batch(gray_crops, recognizer.geometry)
    lp, lengths = recognizer.log_probs(model_input(images, w), w)
    decoded = GreedyDecoder().decode(lp, lengths, recognizer.charset)
    return lp, lengths, [d.text for d in decoded], [d.confidence for d in decoded]


def assert_same(out, ref):
    lp, lengths, texts, conf = ref
    assert out["log_probs"].shape == lp.shape
    np.testing.assert_array_equal(out["lengths"], lengths)
    np.testing.assert_allclose(out["log_probs"], lp, atol=1e-5)
    assert out["text"] == texts
    np.testing.assert_allclose(out["confidence"], conf, atol=1e-5)


def test_signatures_and_layout(exported):
    assert set(SIGNATURES) <= set(exported.signatures)
    sig = exported.signatures["serving_default"]
    inputs = sig.structured_input_signature[1]
    assert inputs["images"].dtype == tf.uint8 and inputs["widths"].dtype == tf.int32
    assert set(sig.structured_outputs) == {"log_probs", "lengths", "text", "confidence"}
    assert exported.signatures["recognize_bytes"].structured_input_signature[1]["images"].dtype == tf.string
    assert (exported.path / "assets" / "htr.json").exists()
    assert not [p for p in exported.path.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_recognize_equals_keras(recognizer, exported):
    cs = crops()
    ref = keras_reference(recognizer, cs)
    assert_same(exported.recognize_lines(cs), ref)
    # the raw signature, with uint8 images padded with paper and explicit widths
    resized = [resize_line(c, recognizer.geometry) for c in cs]
    W = max(r.shape[1] for r in resized) + 13
    batch = np.full((len(cs), recognizer.geometry.height, W), 255, np.uint8)
    for i, r in enumerate(resized):
        batch[i, :, : r.shape[1]] = r
    out = exported.signatures["recognize"](images=tf.constant(batch),
                                           widths=tf.constant([r.shape[1] for r in resized], tf.int32))
    T = ref[0].shape[1]  # the extra padding adds frames past every line's length
    np.testing.assert_allclose(out["log_probs"].numpy()[:, :T], ref[0], atol=1e-5)
    np.testing.assert_array_equal(out["lengths"].numpy(), ref[1])
    assert [t.decode() for t in out["text"].numpy()] == ref[2]


def tf_path_reference(recognizer, data):
    """Keras outputs on images decoded and resized with the TF path (what the graph does)."""
    from htr_tf.export import _tf_to_gray
    from htr_tf.geometry import normalize, tf_resize_line

    g = recognizer.geometry
    resized = [tf_resize_line(_tf_to_gray(tf.io.decode_image(d, channels=0, expand_animations=False)), g)[0]
               .numpy()[:, :, 0] for d in data]
    widths = np.array([r.shape[1] for r in resized], np.int32)
    x = np.zeros((len(data), g.height, g.padded_width(int(widths.max())), 1), np.float32)
    for i, r in enumerate(resized):
        x[i, :, : r.shape[1], 0] = normalize(r)
    lp, lengths = recognizer.log_probs(x, widths)
    decoded = GreedyDecoder().decode(lp, lengths, recognizer.charset)
    return lp, lengths, [d.text for d in decoded], [d.confidence for d in decoded]


def test_recognize_bytes_equals_keras(recognizer, exported):
    import cv2

    cs = crops()
    rgb = cv2.cvtColor(cs[0], cv2.COLOR_GRAY2BGR)
    rgb[:, :, 0] = np.clip(rgb[:, :, 0].astype(int) + 40, 0, 255)  # tinted paper
    rgba = cv2.cvtColor(cs[1], cv2.COLOR_GRAY2BGRA)
    rgba[:, : rgba.shape[1] // 3, 3] = 0                            # a transparent part
    data = [encode_png(rgb), encode_png(rgba), encode_png(cs[2]), encode_png(cs[3])]
    out = exported.recognize_bytes(data)
    assert_same(out, tf_path_reference(recognizer, data))
    # the OpenCV path (fileio + geometry numpy) rounds a few pixels differently: close, not equal
    lp, lengths, _, _ = keras_reference(recognizer, [decode_image(d) for d in data])
    np.testing.assert_array_equal(out["lengths"], lengths)
    np.testing.assert_allclose(out["log_probs"], lp, atol=1e-3)


def test_served_graph_levels_lines_as_the_bundle_was_trained(recognizer, tmp_path):
    """A bundle trained on levelled lines (``geometry.deskew``) is served levelling them in graph."""
    import dataclasses

    from htr_tf.geometry import shear_columns

    levelling = dataclasses.replace(recognizer, geometry=dataclasses.replace(recognizer.geometry, deskew=True))
    served = load_exported(export_recognizer(levelling, tmp_path / "levelling" / "1"))
    slanted = [shear_columns(c, -0.06) for c in crops()[::3]] + [crops()[1]]
    data = [encode_png(c) for c in slanted]
    out = served.recognize_bytes(data)
    lp, lengths, _, _ = keras_reference(levelling, slanted)
    np.testing.assert_array_equal(out["lengths"], lengths)
    np.testing.assert_allclose(out["log_probs"], lp, atol=1e-3)
    # the level reading differs from the slanted one
    assert list(keras_reference(recognizer, slanted)[1]) != list(lengths)


@pytest.mark.parametrize("rule", [dict(reread_density=1e-3, reread_stretch=1.5),
                                  dict(reread_sparse=1e3, reread_squeeze=0.7)], ids=["dense", "sparse"])
def test_served_graph_rereads_lines_as_the_numpy_path(recognizer, tmp_path, rule):
    """With ``geometry.reread_density`` (``reread_sparse``) the served ``recognize_bytes`` reads
    dense (sparse) lines again wider (narrower), as :func:`htr_tf.recognize.reread_lines` does."""
    import dataclasses

    from htr_tf.recognize import crop_log_probs, line_model

    g = dataclasses.replace(recognizer.geometry, **rule)
    rereading = dataclasses.replace(recognizer, geometry=g)
    served = load_exported(export_recognizer(rereading, tmp_path / "reread" / "1"))
    data = [encode_png(c) for c in crops()]
    out = served.recognize_bytes(data)
    local = crop_log_probs(line_model(rereading), [decode_image(d) for d in data])
    base = crop_log_probs(line_model(recognizer), [decode_image(d) for d in data])
    assert list(out["lengths"]) == [len(x) for x in local]
    assert [len(x) for x in local] != [len(x) for x in base]  # some lines were read again
    for i, lp in enumerate(local):
        np.testing.assert_allclose(out["log_probs"][i, : len(lp)], lp, atol=2e-3)


def test_served_graph_reads_the_bundles_views_as_the_numpy_path(recognizer, tmp_path):
    """A bundle read in several views (htr.json ``decoding.variants``) is served reading them:
    ``recognize_bytes`` keeps the text :func:`htr_tf.readings.choose_reading` keeps from the
    same views' readings, and its log-probs are the as-written view's."""
    import dataclasses

    from htr_tf.readings import VARIANTS_KEY, choose_reading, tf_variant_lines

    views = ("base", "small", "narrow", "wide", "thin")
    viewing = dataclasses.replace(recognizer, decoding={VARIANTS_KEY: {"options": {"views": list(views)}}})
    served = load_exported(export_recognizer(viewing, tmp_path / "views" / "1"))
    data = [encode_png(c) for c in crops()]
    out = served.recognize_bytes(data)
    base_lp, base_len, _, _ = tf_path_reference(recognizer, data)
    np.testing.assert_allclose(out["log_probs"], base_lp, atol=1e-5)
    np.testing.assert_array_equal(out["lengths"], base_len)
    # the reference: every view of the TF-resized lines read by Keras, the choice made in numpy
    from htr_tf.export import _tf_to_gray
    from htr_tf.geometry import normalize, tf_resize_line

    g = recognizer.geometry
    resized = [tf_resize_line(_tf_to_gray(tf.io.decode_image(d, channels=0, expand_animations=False)), g)[0]
               .numpy()[:, :, 0] for d in data]
    W = max(r.shape[1] for r in resized)
    batch = np.stack([np.pad(r, ((0, 0), (0, W - r.shape[1])), constant_values=255) for r in resized])
    widths = np.array([r.shape[1] for r in resized], np.int32)
    per_view = []
    for name in views:
        imgs, w = (t.numpy() for t in tf_variant_lines(tf.constant(batch), tf.constant(widths), g, name))
        x = np.zeros((len(data), g.height, g.padded_width(int(w.max())), 1), np.float32)
        x[:, :, : imgs.shape[2], 0] = normalize(imgs)       # paper past each width reads 0, as in graph
        lp, ln = recognizer.log_probs(x, w)
        per_view.append((np.asarray(lp), np.asarray(ln)))
    readings = [GreedyDecoder().decode(lp, ln, recognizer.charset) for lp, ln in per_view]
    for i in range(len(data)):
        want = choose_reading([r[i] for r in readings], [lp[i, : ln[i]] for lp, ln in per_view], recognizer.charset)
        assert out["text"][i] == want.text
        np.testing.assert_allclose(out["confidence"][i], want.confidence, atol=1e-5)


def test_jpeg_bytes_decode_in_graph(recognizer, exported):
    import cv2

    ok, buf = cv2.imencode(".jpg", crops()[0], [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = exported.recognize_bytes([buf.tobytes()])
    assert_same(out, tf_path_reference(recognizer, [buf.tobytes()]))
    # TF's and OpenCV's JPEG decoders may round a pixel differently: close, not equal
    lp, lengths, _, _ = keras_reference(recognizer, [decode_image(buf.tobytes())])
    np.testing.assert_array_equal(out["lengths"], lengths)
    np.testing.assert_allclose(out["log_probs"], lp, atol=1e-2)


def test_metadata_travels_inside(recognizer, exported):
    meta = recognizer.metadata()
    assert exported.metadata == json.loads(json.dumps(meta))
    assert json.loads((exported.path / "assets" / "htr.json").read_text()) == exported.metadata
    assert exported.charset == recognizer.charset and exported.geometry == recognizer.geometry
    raw = exported.signatures["metadata"]()["json"].numpy().decode()
    assert json.loads(raw)["kind"] == "recognizer"
    assert tf.io.read_file(exported.loaded.htr_json.asset_path).numpy().decode() == raw


def test_bad_inputs_give_clear_errors(exported):
    H = exported.geometry.height
    with pytest.raises(DataError, match="uint8"):
        exported.recognize(np.zeros((1, H, 40), np.float32))
    with pytest.raises(DataError, match=rf"\[batch, {H}, width\]"):
        exported.recognize(np.zeros((H, 40), np.uint8))
    with pytest.raises(DataError, match=rf"\[batch, {H}, width\]"):
        exported.recognize(np.zeros((1, H + 1, 40), np.uint8))
    with pytest.raises(DataError, match="widths"):
        exported.recognize(np.zeros((2, H, 40), np.uint8), [40])
    with pytest.raises(DataError, match="widths"):
        exported.recognize(np.zeros((1, H, 40), np.uint8), [41])
    with pytest.raises(DataError, match="could not be decoded"):
        exported.recognize_bytes([b"definitely not an image"])
    with pytest.raises(DataError, match="bytes"):
        exported.recognize_bytes(b"\x89PNG")
    assert exported.recognize_bytes([])["text"] == []


def test_load_exported_errors(tmp_path, tiny_recognizer_dir):
    with pytest.raises(ModelError, match="not a SavedModel"):
        load_exported(tmp_path / "missing")
    with pytest.raises(ModelError, match="not a SavedModel"):
        load_exported(tiny_recognizer_dir)  # a Keras bundle, not an export
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "saved_model.pb").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot load"):
        load_exported(bad)


def test_export_replaces_atomically(recognizer, tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    export_recognizer(recognizer, out)
    assert not (out / "stale.txt").exists() and (out / "saved_model.pb").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
