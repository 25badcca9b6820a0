"""Tuned decoder settings travel with the recogniser: `htr lm tune --save` writes them into
htr.json, every export carries them, and every backend and command uses them as defaults
that explicit options override."""

from __future__ import annotations

import json
import shutil

import pytest

from htr_tf.decode import build_decoder, decoder_defaults, parse_decoder_options
from htr_tf.errors import ConfigError, ModelError

TUNED = {"beam": {"options": {"beam_width": 3, "min_prob": 0.0}, "tuned": {"split": "validation"}}}


# -- the registry side: defaults, overrides, errors ------------------------------------------------
def test_tuned_settings_are_defaults_and_options_override_them():
    assert build_decoder("beam", TUNED).options() == {"beam_width": 3, "min_prob": 0.0, "backend": "numpy"}
    assert build_decoder("beam", TUNED, {"beam_width": 5}).beam_width == 5
    assert build_decoder("beam", None).beam_width == 10                       # no entry: as before
    assert build_decoder("greedy", TUNED).name == "greedy"
    given = build_decoder("beam", None)
    assert build_decoder(given, TUNED) is given                               # an object is used as is
    with pytest.raises(ConfigError, match="decoder object"):
        build_decoder(given, TUNED, {"beam_width": 2})
    with pytest.raises(ConfigError, match=r"unknown options \['beam_wdth'\]; valid options: "
                                          r"\['beam_width', 'min_prob', 'backend'\]"):
        build_decoder("beam", TUNED, {"beam_wdth": 2})
    with pytest.raises(ConfigError, match="tuned settings"):
        build_decoder("beam", {"beam": {"options": {"alpha": 1}}})
    with pytest.raises(ModelError, match="no 'options' object"):
        decoder_defaults({"beam": {"beam_width": 3}}, "beam")
    assert decoder_defaults({}, "beam") == {} and decoder_defaults(TUNED, "beam+lm") == {}


def test_decoder_option_values_are_typed():
    assert parse_decoder_options(["a=1", "b=1.5", "c=true", "d=False", "e=none", "f=tf", "g=-2"]) == \
        {"a": 1, "b": 1.5, "c": True, "d": False, "e": None, "f": "tf", "g": -2}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_decoder_options(["beam_width"])


# -- the bundle and its exports ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def tuned_bundle(tiny_recognizer_dir, tmp_path_factory):
    """A copy of the tiny recogniser with a tuned ``beam`` entry in its htr.json."""
    from htr_tf.models.recognizer import Recognizer

    path = tmp_path_factory.mktemp("tuned") / "recognizer"
    shutil.copytree(tiny_recognizer_dir, path)
    Recognizer.save_decoder_settings(path, "beam", TUNED["beam"]["options"], TUNED["beam"]["tuned"])
    return path


def test_bundle_keeps_other_decoders_and_keys(tuned_bundle, tiny_recognizer_dir, tmp_path):
    from htr_tf.models.recognizer import Recognizer

    path = tmp_path / "rec"
    shutil.copytree(tuned_bundle, path)
    Recognizer.save_decoder_settings(path, "beam+lm", {"lm_weight": 2.0})
    meta = json.loads((path / "htr.json").read_text())
    assert meta["decoding"] == {**TUNED, "beam+lm": {"options": {"lm_weight": 2.0}}}
    plain = json.loads((tiny_recognizer_dir / "htr.json").read_text())
    assert {k: v for k, v in meta.items() if k != "decoding"} == plain
    assert not [p for p in path.iterdir() if p.name.startswith(".")]          # no temporary files left
    rec = Recognizer.load(path)
    assert rec.decoding == meta["decoding"] and rec.metadata()["decoding"] == meta["decoding"]
    rec.save(tmp_path / "again")                                               # a re-save keeps it
    assert Recognizer.load(tmp_path / "again").decoding == meta["decoding"]
    assert "decoding" not in Recognizer.load(tiny_recognizer_dir).metadata()   # untuned: no key


def test_savedmodel_and_grpc_carry_and_apply_the_tuned_entry(tuned_bundle, tmp_path):
    pytest.importorskip("grpc")
    pytest.importorskip("tensorflow_serving.apis")
    from htr_tf.export import load_exported
    from htr_tf.pipeline import Pipeline
    from htr_tf.serving import serve
    from htr_tf.serving.client import GrpcBackend
    from htr_tf.serving.repository import write_repository

    repo = tmp_path / "repo"
    assert write_repository(repo, recognizer=tuned_bundle, models=["recognizer"]) == {"recognizer": 1}
    exported = load_exported(repo / "recognizer" / "1")
    assert exported.metadata["decoding"] == TUNED
    assert json.loads((repo / "recognizer" / "1" / "assets" / "htr.json").read_text())["decoding"] == TUNED
    srv = serve(repo, port=0, poll_seconds=0.1)
    try:
        backend = GrpcBackend.connect(srv.address, recognizer_only=True)
        try:
            assert backend.decoding == TUNED
            assert Pipeline(backend, "beam").decoder.beam_width == 3
            assert Pipeline(backend, "beam", decoder_options={"beam_width": 6}).decoder.beam_width == 6
        finally:
            backend.close()
    finally:
        srv.stop(0)


def test_tflite_carries_and_applies_the_tuned_entry(tuned_bundle, tmp_path):
    pytest.importorskip("ai_edge_litert")
    from htr_tf import tflite
    from htr_tf.pipeline import Pipeline

    out = tflite.convert_bundle("recognizer", tuned_bundle, tmp_path / "recognizer.tflite")
    assert tflite.read_metadata(out, "recognizer")["decoding"] == TUNED
    backend = tflite.TFLiteBackend(tflite.TFLiteRecognizer(out))
    assert backend.decoding == TUNED
    assert Pipeline(backend, "beam").decoder.options()["beam_width"] == 3
    assert Pipeline(backend, "beam", decoder_options={"min_prob": 0.01}).decoder.options() == \
        {"beam_width": 3, "min_prob": 0.01, "backend": "numpy"}
    with pytest.raises(ConfigError, match="valid options"):
        Pipeline(backend, "beam", decoder_options={"nope": 1})


def test_local_backend_recognize_lines_and_evaluate_use_the_tuned_entry(tuned_bundle, tiny_line_records):
    from htr_tf.evaluate import evaluate_recognizer
    from htr_tf.models.recognizer import Recognizer
    from htr_tf.pipeline import LocalBackend, Pipeline

    rec = Recognizer.load(tuned_bundle)
    assert Pipeline(LocalBackend(rec), "beam").decoder.beam_width == 3
    report = evaluate_recognizer(rec, tiny_line_records, decoder="beam", limit=2)
    assert report["decoder"] == {"name": "beam", "beam_width": 3, "min_prob": 0.0, "backend": "numpy"}
    report = evaluate_recognizer(rec, tiny_line_records, decoder="beam", limit=2, decoder_options={"beam_width": 2})
    assert report["decoder"]["beam_width"] == 2 and report["decoder"]["min_prob"] == 0.0


# -- the commands -------------------------------------------------------------------------------------
def test_evaluate_and_ocr_commands_take_tuned_settings_and_decoder_options(tuned_bundle, tiny_line_records,
                                                                          tmp_path, capsys, monkeypatch):
    from conftest import render_text_line
    from htr_tf.cli import main
    from htr_tf.commands import ocr
    from htr_tf.fileio import write_png

    report = tmp_path / "r.json"
    base = ["evaluate", "recognizer", "--model", str(tuned_bundle), "--data", str(tiny_line_records),
            "--decoder", "beam", "--limit", "2", "--quiet", "--report", str(report)]
    assert main(base) == 0
    assert json.loads(report.read_text())["decoder"]["beam_width"] == 3
    assert main(base + ["--decoder-option", "beam_width=2", "--decoder-option", "backend=tf"]) == 0
    assert json.loads(report.read_text())["decoder"] == {"name": "beam", "beam_width": 2, "min_prob": 0.0,
                                                         "backend": "tf"}
    assert main(base + ["--beam-width", "4"]) == 0
    assert json.loads(report.read_text())["decoder"]["beam_width"] == 4
    capsys.readouterr()
    assert main(base + ["--decoder-option", "alpha=1"]) == 1
    err = capsys.readouterr().err
    assert "unknown options ['alpha']" in err and "valid options: ['beam_width', 'min_prob', 'backend']" in err

    image = tmp_path / "line.png"
    write_png(image, render_text_line("hello world"))
    built = []
    real = ocr.decoder_from_args
    monkeypatch.setattr(ocr, "decoder_from_args", lambda a, decoding=None: built.append(real(a, decoding)) or built[-1])
    assert main(["ocr", "--level", "line", "--model", str(tuned_bundle), "--decoder", "beam", str(image)]) == 0
    assert built[-1].options() == {"beam_width": 3, "min_prob": 0.0, "backend": "numpy"}
    assert main(["ocr", "--level", "line", "--model", str(tuned_bundle), "--decoder", "beam",
                 "--decoder-option", "min_prob=0.001", str(image)]) == 0
    assert built[-1].options()["min_prob"] == 0.001 and built[-1].beam_width == 3
    capsys.readouterr()
    assert main(["ocr", "--level", "line", "--model", str(tuned_bundle), "--decoder", "greedy",
                 "--decoder-option", "beam_width=2", str(image)]) == 1      # greedy takes no options
    assert "decoder 'greedy': unknown options ['beam_width']; valid options: []" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:.*fallback")
def test_lm_tune_save_writes_the_best_setting_into_the_bundle(tuned_bundle, tiny_line_records, tmp_path, capsys):
    pytest.importorskip("flashlight.lib.text.decoder.kenlm")
    pytest.importorskip("kenlm")
    from htr_tf.cli import main
    from htr_tf.decode.lm import build_lm
    from htr_tf.models.recognizer import Recognizer
    from htr_tf.pipeline import LocalBackend, Pipeline

    bundle = tmp_path / "rec"
    shutil.copytree(tuned_bundle, bundle)
    before = json.loads((bundle / "htr.json").read_text())
    lm = tmp_path / "toy.arpa"
    build_lm(lm, 2, lines=["the cat sat on the mat", "a dog ran far away", "hello world"] * 5,
             estimator="python")
    assert main(["lm", "tune", "--model", str(bundle), "--data", str(tiny_line_records), "--split", "validation",
                 "--decoder", "beam+lm", "--lm", str(lm), "--lm-weight", "0.5,1", "--word-score", "0",
                 "--beam-width", "4", "--limit", "4", "--save", "--quiet"]) == 0
    best = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    meta = json.loads((bundle / "htr.json").read_text())
    entry = meta["decoding"]["beam+lm"]
    assert entry["options"] == {"beam_width": 4, "lm_weight": best["lm_weight"], "word_score": 0.0}
    tuned = entry["tuned"]
    assert tuned["split"] == "validation" and tuned["lines"] == 4 and tuned["metric"] == "cer"
    # what it was tuned with, named without this machine's folders (htr_tf.provenance)
    assert tuned["cer"] == best["cer"] and tuned["wer"] == best["wer"] and tuned["lm"] == "toy.arpa"
    assert tuned["data"] == tiny_line_records.name
    assert meta["decoding"]["beam"] == TUNED["beam"]                            # other decoders kept
    assert {k: v for k, v in meta.items() if k != "decoding"} == \
        {k: v for k, v in before.items() if k != "decoding"}
    dec = Pipeline(LocalBackend(Recognizer.load(bundle)), "beam+lm", decoder_options={"lm": str(lm)}).decoder
    try:
        assert (dec.beam_width, dec.lm_weight, dec.word_score) == (4, best["lm_weight"], 0.0)
    finally:
        dec.close()
