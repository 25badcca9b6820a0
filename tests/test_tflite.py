"""TFLite conversion and the LiteRT backend: parity with Keras, quantisation, metadata, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import render_text_line
from htr_tf.errors import ConfigError, ModelError
from htr_tf.recognize import line_batch
from test_paragraph import draw_form, ink_model, make_form_records

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

import htr_tf  # noqa: E402
from htr_tf import tflite  # noqa: E402

TEXTS = ["hello world", "Sir, yes", "a", "the of and to in a is that", "October 1755"]


def random_biases(model, seed: int = 0) -> None:
    """Give every bias and batch-norm statistic random values, as training would.

    With the zero biases of a fresh model, padding frames give zero features and an LSTM
    state that stays zero, so an unmasked backward LSTM could not be told from a masked one.
    """
    rng = np.random.default_rng(seed)
    for v in model.weights:
        name, shape = v.path, tuple(v.shape)
        if name.endswith(("bias", "beta")):
            v.assign(rng.normal(0, 0.5, shape).astype(np.float32))
        elif name.endswith("moving_mean"):
            v.assign(rng.normal(0, 0.1, shape).astype(np.float32))
        elif name.endswith("moving_variance"):
            v.assign(rng.uniform(0.5, 1.5, shape).astype(np.float32))


@pytest.fixture(scope="module")
def bundles(tiny_recognizer_dir, tmp_path_factory):
    """The tiny recogniser (random biases) and hand-set paragraph / line models (maps follow the ink)."""
    from htr_tf.models.layout_common import FCNConfig
    from htr_tf.models.lines import LineDetector, LineDetectorConfig
    from htr_tf.models.paragraph import ParagraphConfig, ParagraphModel
    from htr_tf.models.recognizer import Recognizer

    d = tmp_path_factory.mktemp("bundles")
    rec = Recognizer.load(tiny_recognizer_dir)
    random_biases(rec.model)
    rec.save(d / "recognizer")
    pcfg = ParagraphConfig(input_height=128, input_width=96, fcn=FCNConfig(filters=(4, 8), out_stride=2))
    ParagraphModel(ink_model(128, 96, 2, (5, 5)), pcfg).save(d / "paragraph")
    lcfg = LineDetectorConfig(input_width=256, max_input_height=512, fcn=FCNConfig(filters=(4, 8)))
    LineDetector(ink_model(None, 256, 2, (3, 15), threshold=0.1), lcfg).save(d / "lines")
    return {"recognizer": d / "recognizer", "paragraph": d / "paragraph", "lines": d / "lines"}


@pytest.fixture(scope="module")
def converted(bundles, tmp_path_factory):
    """Float32 TFLite files of the three bundles, made with the CLI."""
    from htr_tf.cli import main

    d = tmp_path_factory.mktemp("tflite")
    for kind, path in bundles.items():
        assert main(["tflite", kind, "--model", str(path), "--out", str(d / f"{kind}.tflite")]) == 0
    return {kind: d / f"{kind}.tflite" for kind in bundles}


@pytest.fixture(scope="module")
def local(bundles):
    from htr_tf.pipeline import LocalBackend

    return LocalBackend.load(bundles["recognizer"], bundles["paragraph"], bundles["lines"])


def line_crops():
    return [render_text_line(t, height=h, seed=i) for i, (t, h) in enumerate(zip(TEXTS, (48, 40, 20, 64, 44)))]


def greedy(backend, images, widths):
    from htr_tf.decode import GreedyDecoder

    lp, lengths = backend.log_probs(images, widths)
    return lp, lengths, [d.text for d in GreedyDecoder().decode(lp, lengths, backend.charset)]


# -- metadata -----------------------------------------------------------------------------------------
def test_metadata_travels_inside_the_file_and_round_trips(bundles, converted):
    from htr_tf.models.recognizer import Recognizer

    path = converted["recognizer"]
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.startswith(".")) == \
        ["lines.tflite", "paragraph.tflite", "recognizer.tflite"]            # no side files
    entries = tflite.metadata_entries(path)
    assert tflite.METADATA_NAME in entries
    meta = tflite.read_metadata(path, "recognizer")
    assert json.loads(entries[tflite.METADATA_NAME]) == meta
    bundle = json.loads((bundles["recognizer"] / "htr.json").read_text())
    for key in ("kind", "format_version", "charset", "geometry", "config", "info"):
        assert meta[key] == bundle[key], key
    assert meta["tflite"]["quantize"] == "none"
    assert Recognizer.read_metadata(bundles["recognizer"])["charset"] == meta["charset"]
    # embedding again replaces the entry, buffers stay 16-byte aligned, and LiteRT still loads it
    data = tflite.embed_metadata(path.read_bytes(), {**meta, "tflite": {**meta["tflite"], "source": "again"}})
    assert tflite.read_metadata(data)["tflite"]["source"] == "again"
    assert list(tflite.metadata_entries(data)).count(tflite.METADATA_NAME) == 1
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    base = np.frombuffer(data, np.uint8).ctypes.data
    for i in range(model.BuffersLength()):
        b = model.Buffers(i)
        if b.DataLength():
            assert (b.DataAsNumpy().ctypes.data - base) % 16 == 0
    (path.parent / "again.tflite").write_bytes(data)
    try:
        assert tflite.TFLiteRecognizer(path.parent / "again.tflite").charset.chars == bundle["charset"]["chars"]
    finally:
        (path.parent / "again.tflite").unlink()
    for kind in ("paragraph", "lines"):
        assert tflite.read_metadata(converted[kind], kind)["config"] == json.loads(
            (bundles[kind] / "htr.json").read_text())["config"]


def test_builtin_ops_only(converted):
    for path in converted.values():
        ops = tflite.operators(path.read_bytes())
        assert ops and not [op for op in ops if op.startswith(("CUSTOM", "FLEX"))], ops


# -- parity with Keras ------------------------------------------------------------------------------------
def test_recognizer_equals_keras(local, converted):
    rec = tflite.TFLiteRecognizer(converted["recognizer"], num_threads=1)
    assert rec.geometry == local.geometry and rec.charset.chars == local.charset.chars
    assert rec.width_downsample == local.width_downsample
    images, widths = line_batch(line_crops(), local.geometry)
    lp_k, len_k, text_k = greedy(local, images, widths)
    lp_t, len_t, text_t = greedy(rec, images, widths)
    assert lp_t.shape == lp_k.shape
    np.testing.assert_array_equal(len_t, len_k)
    for i, n in enumerate(len_k):
        np.testing.assert_allclose(lp_t[i, :n], lp_k[i, :n], atol=1e-4)
    assert text_t == text_k and any(text_k)          # an untrained model still writes something
    # one line alone gives the same frames as inside the padded batch
    one, w1 = line_batch(line_crops()[:1], local.geometry)
    np.testing.assert_allclose(rec.log_probs(one, w1)[0][0, : len_k[0]], lp_t[0, : len_k[0]], atol=1e-5)


def test_width_buckets_and_interpreter_pool_give_the_same_frames(local, converted):
    images, widths = line_batch(line_crops(), local.geometry)
    exact = tflite.TFLiteRecognizer(converted["recognizer"], width_bucket=0, max_shapes=1)
    lp0, len0 = exact.log_probs(images, widths)
    for bucket, shapes in ((64, 2), (512, 8)):
        rec = tflite.TFLiteRecognizer(converted["recognizer"], width_bucket=bucket, max_shapes=shapes)
        for _ in range(2):                       # the second pass reuses (or evicts) prepared shapes
            lp, lengths = rec.log_probs(images, widths)
            np.testing.assert_array_equal(lengths, len0)
            for i, n in enumerate(len0):
                np.testing.assert_allclose(lp[i, :n], lp0[i, :n], atol=1e-5)
        assert len(rec._pool) <= shapes
    assert len(exact._pool) == 1
    with pytest.raises(ConfigError, match="width_bucket"):
        tflite.TFLiteRecognizer(converted["recognizer"], width_bucket=-1)


def test_layout_models_equal_keras(local, converted):
    par = tflite.TFLiteParagraph.open(converted["paragraph"])
    det = tflite.TFLiteLines.open(converted["lines"])
    for seed in (0, 1):
        page = draw_form(seed)[0]
        x, _ = local.paragraph.preprocess(page)
        np.testing.assert_allclose(par.masks(x[None]), local.paragraph.masks(x[None]), atol=1e-5)
        box_k, score_k = local.paragraph.detect(page)
        box_t, score_t = par.detect(page)
        assert score_k > 0.5
        np.testing.assert_allclose(box_t, box_k, atol=1e-3)
        xl, _, _ = local.lines.preprocess(page, box_k)
        np.testing.assert_allclose(det.mask(xl), local.lines.mask(xl), atol=1e-5)
        boxes_k, scores_k = local.lines.detect(page, box_k)
        boxes_t, scores_t = det.detect(page, box_k)
        assert len(boxes_k) >= 3
        np.testing.assert_allclose(boxes_t, boxes_k, atol=1e-2)
        np.testing.assert_allclose(scores_t, scores_k, atol=1e-4)


def test_pipeline_on_tflite_equals_local(local, converted):
    from htr_tf.pipeline import Pipeline, make_backend

    backend = make_backend("tflite", recognizer=converted["recognizer"], paragraph=converted["paragraph"],
                           lines=converted["lines"], num_threads=1)
    assert isinstance(backend, tflite.TFLiteBackend) and backend.name == "tflite"
    for seed in (0, 2):
        page = draw_form(seed)[0]
        a = Pipeline(local, "greedy").run(page)
        b = Pipeline(backend, "greedy").run(page)
        assert len(a.lines) >= 3 and a.text.strip()
        assert b.text == a.text
        assert b.extra["backend"] == "tflite"
        for la, lb in zip(a.lines, b.lines):
            np.testing.assert_allclose(lb.box, la.box, atol=1e-2)
    no_area = tflite.TFLiteBackend.load(converted["recognizer"], lines=converted["lines"], use_paragraph=False)
    assert no_area.paragraph is None
    box, score = no_area.find_area(draw_form(0)[0])
    assert score == 0.0 and box.tolist() == [0, 0, 360, 480]


# -- quantisation ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def form_records(tmp_path_factory):
    return make_form_records(tmp_path_factory.mktemp("forms") / "tiny", {"train": 3})


@pytest.mark.parametrize("mode", ["float16", "dynamic", "int8"])
def test_quantize_modes_make_files_that_run(bundles, converted, local, tiny_line_records, form_records,
                                            tmp_path, mode):
    out = tmp_path / f"recognizer-{mode}.tflite"
    cal = ["--calibration", str(tiny_line_records), "--calibration-limit", "8"] if mode == "int8" else []
    from htr_tf.cli import main

    assert main(["tflite", "recognizer", "--model", str(bundles["recognizer"]), "--out", str(out),
                 "--quantize", mode, *cal]) == 0
    meta = tflite.read_metadata(out, "recognizer")
    assert meta["tflite"]["quantize"] == mode
    assert meta["tflite"]["calibration_samples"] == (8 if mode == "int8" else 0)
    assert out.read_bytes() != converted["recognizer"].read_bytes()
    ops = tflite.operators(out.read_bytes())
    assert ("QUANTIZE" in ops) == (mode == "int8")            # int8 activations: float input quantised
    assert ("DEQUANTIZE" in ops) == (mode in ("float16", "int8"))
    rec = tflite.TFLiteRecognizer(out)
    images, widths = line_batch(line_crops(), local.geometry)
    lp_q, len_q = rec.log_probs(images, widths)
    lp_k, len_k = local.log_probs(images, widths)
    np.testing.assert_array_equal(len_q, len_k)
    probs_q = np.exp(lp_q[0, : len_k[0]])
    np.testing.assert_allclose(probs_q.sum(-1), 1.0, atol=0.02)
    np.testing.assert_allclose(probs_q, np.exp(lp_k[0, : len_k[0]]), atol=0.1)
    if mode == "int8":   # the layout models calibrate on pages through their own preprocess
        lines_out = tmp_path / "lines-int8.tflite"
        tflite.convert_bundle("lines", bundles["lines"], lines_out, "int8", form_records, "train", 3)
        det = tflite.TFLiteLines.open(lines_out)
        page = draw_form(0)[0]
        x, _, _ = local.lines.preprocess(page)
        np.testing.assert_allclose(det.mask(x), local.lines.mask(x), atol=0.1)


# -- bad input ------------------------------------------------------------------------------------------------
def test_bad_input_gives_clear_errors(bundles, converted, tmp_path, capsys):
    from htr_tf.cli import main

    with pytest.raises(ModelError, match="no recognizer bundle here"):
        tflite.convert_bundle("recognizer", tmp_path / "missing", tmp_path / "x.tflite")
    with pytest.raises(ModelError, match="kind is 'paragraph', expected 'recognizer'"):
        tflite.convert_bundle("recognizer", bundles["paragraph"], tmp_path / "x.tflite")
    with pytest.raises(ConfigError, match="unknown quantize mode 'int4'"):
        tflite.convert_bundle("recognizer", bundles["recognizer"], tmp_path / "x.tflite", "int4")
    with pytest.raises(ConfigError, match="needs calibration data"):
        tflite.convert_bundle("recognizer", bundles["recognizer"], tmp_path / "x.tflite", "int8")
    with pytest.raises(ConfigError, match="unknown model kind"):
        tflite.convert_bundle("words", bundles["recognizer"], tmp_path / "x.tflite")
    assert not (tmp_path / "x.tflite").exists()
    # loading
    with pytest.raises(ModelError, match="no such TFLite file"):
        tflite.TFLiteRecognizer(tmp_path / "missing.tflite")
    with pytest.raises(ModelError, match="is a directory"):
        tflite.TFLiteRecognizer(bundles["recognizer"])
    with pytest.raises(ModelError, match="kind is 'paragraph', expected 'recognizer'"):
        tflite.TFLiteBackend.load(recognizer=converted["paragraph"], lines=converted["lines"])
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelError, match="not a TFLite file"):
        tflite.TFLiteRecognizer(tmp_path / "junk.tflite")
    # a TFLite file made without htr-tf's metadata

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def double(x):
        return x * 2.0

    plain = tf.lite.TFLiteConverter.from_concrete_functions([double.get_concrete_function()], double).convert()
    (tmp_path / "plain.tflite").write_bytes(plain)
    with pytest.raises(ModelError, match="without htr-tf metadata"):
        tflite.TFLiteRecognizer(tmp_path / "plain.tflite")
    # the CLI prints one line, no traceback
    assert main(["tflite", "info", str(tmp_path / "plain.tflite")]) == 1
    assert main(["tflite", "recognizer", "--model", str(bundles["lines"]), "--out", str(tmp_path / "y.tflite")]) == 1
    err = capsys.readouterr().err
    assert "without htr-tf metadata" in err and "expected 'recognizer'" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["tflite", "recognizer", "--out", str(tmp_path / "y.tflite"), "--quantize", "int4"])
    assert tuple(tflite.QUANTIZE_MODES) == __import__("htr_tf.commands.tflite", fromlist=["x"]).QUANTIZE_MODES


def test_info_command(converted, capsys):
    from htr_tf.cli import main

    assert main(["tflite", "info", str(converted["recognizer"])]) == 0
    out = capsys.readouterr().out
    assert "recognizer model, quantize none" in out
    assert main(["tflite", "info", "--json", str(converted["lines"])]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "lines"


# -- the bundled files ------------------------------------------------------------------------------------------
def test_bundled_tflite_files_match_the_bundled_keras_models():
    """Stale files (a retrained Keras bundle not converted again) fail here: run `htr tflite all`."""
    from htr_tf.bundle import bundled_model_path

    total = 0
    for kind in tflite.KINDS:
        path = bundled_model_path(kind, tflite=True)
        assert path.exists(), f"{path} is missing: run `htr tflite all`"
        meta = tflite.read_metadata(path, kind)
        keras_meta = json.loads((bundled_model_path(kind) / "htr.json").read_text())
        for key in ("config", "info", "charset", "geometry"):
            assert meta.get(key) == keras_meta.get(key), f"{path} is stale ({key}): run `htr tflite all`"
        assert meta["tflite"]["quantize"] == tflite.BUNDLED_QUANTIZE[kind]
        total += path.stat().st_size
    assert total < 30e6


def test_ocr_line_images_on_litert(local, converted, tmp_path, capsys):
    """`htr ocr --level line` with a .tflite model (or --backend tflite) reads as in process."""
    from htr_tf.cli import main
    from htr_tf.fileio import write_png
    from htr_tf.recognize import recognize_crops

    paths = []
    for i, crop in enumerate(line_crops()):
        paths.append(str(tmp_path / f"line{i}.png"))
        write_png(paths[-1], crop)
    want = [d.text for d in recognize_crops(local, line_crops(), "greedy")]
    for extra in ([], ["--backend", "tflite"]):
        capsys.readouterr()
        assert main(["ocr", "--level", "line", "--decoder", "greedy", "--model", str(converted["recognizer"]),
                     *extra, *paths]) == 0
        assert capsys.readouterr().out.split("\n")[:-1] == want
    assert main(["ocr", "--level", "line", "--format", "json", "--decoder", "greedy", "--model",
                 str(converted["recognizer"]), paths[0]]) == 0
    assert json.loads(capsys.readouterr().out)["backend"] == "tflite"
