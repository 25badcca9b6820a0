"""Recogniser training: recipe config, CTC training, resume, fine-tuning, CLI and multi-worker."""

from __future__ import annotations

import dataclasses

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from htr_tf.charset import Charset
from htr_tf.errors import ConfigError
from htr_tf.models.recognizer import Recognizer, RecognizerConfig
from htr_tf.train.recognizer import DataSpec, TrainConfig

keras = pytest.importorskip("keras")

REPO = Path(__file__).resolve().parents[1]
TINY_RECIPE = REPO / "training" / "recognizer-tiny.yaml"


def tiny_config(records: Path, **changes) -> TrainConfig:
    cfg = TrainConfig.load(TINY_RECIPE)
    return cfg.replace(data=(DataSpec(str(records)),), **changes)


# -- the recipe ----------------------------------------------------------------------------------
def test_train_config_round_trips_and_rejects_unknown_keys(tmp_path):
    cfg = TrainConfig(model=RecognizerConfig.tiny(),
                      data=(DataSpec("a", "train", 0.7), DataSpec("b", "train", 0.3)),
                      validation=DataSpec("b", "validation"), augment={"p_affine": 0.5}, epochs=3)
    cfg.save(tmp_path / "t.yaml")
    assert TrainConfig.load(tmp_path / "t.yaml") == cfg
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown key.*learning_rat"):
        TrainConfig.from_dict({"learning_rat": 1e-3})
    with pytest.raises(ConfigError, match="unknown key.*filters"):
        TrainConfig.from_dict({"model": {"filters": [8]}})
    with pytest.raises(ConfigError, match="unknown key.*weigth"):
        TrainConfig.from_dict({"data": [{"records": "a", "weigth": 2}]})
    with pytest.raises(ConfigError, match="geometry.*hieght"):
        TrainConfig.from_dict({"geometry": {"hieght": 64}})
    # the geometry keeps its types: margin fractions are not cut to integers
    from htr_tf.geometry import LineGeometry

    assert TrainConfig().line_geometry() == LineGeometry()
    assert TrainConfig.from_dict({"geometry": {"height": 48, "margin_y": 0.1}}).line_geometry() == \
        LineGeometry(height=48, margin_y=0.1)
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainConfig.from_dict({"lr_schedule": "linear"})


def test_bundled_recipes_load():
    paths = sorted((REPO / "training").glob("recognizer*.yaml"))
    assert len(paths) >= 4
    for path in paths:                                 # the continuation recipes through `extends:`
        cfg = TrainConfig.load(path)
        cfg.model.check_geometry(cfg.line_geometry())


def test_data_spec_parses_command_line_form():
    assert DataSpec.parse("data/gw") == DataSpec("data/gw", "train", 1.0)
    assert DataSpec.parse("data/gw:validation") == DataSpec("data/gw", "validation", 1.0)
    assert DataSpec.parse("data/synth:train:0.7") == DataSpec("data/synth", "train", 0.7)
    with pytest.raises(ConfigError, match="weight"):
        DataSpec.parse("data/synth:train:lots")
    with pytest.raises(ConfigError, match="weight must be > 0"):
        DataSpec.parse("data/synth:train:0")


def test_validation_rates_are_pooled_total_edits_over_total_length():
    from htr_tf.metrics import score_lines   # what TextMetrics reports as val_cer / val_wer

    r = score_lines(["abcd", "ef gh"], ["abxd", "ef"])
    assert r["cer"] == pytest.approx((1 + 3) / (4 + 5))
    assert r["wer"] == pytest.approx((1 + 1) / (1 + 2))
    r = score_lines(["", "ab"], ["", "ab"])
    assert (r["cer"], r["wer"]) == (0.0, 0.0)


# -- learning --------------------------------------------------------------------------------------
def test_loss_decreases_and_a_tiny_model_overfits_a_few_lines():
    from conftest import render_text_line
    from htr_tf.geometry import LineGeometry
    from htr_tf.recognize import line_batch, model_input
    from htr_tf.decode import GreedyDecoder
    from htr_tf.metrics import score_lines
    from htr_tf.models.recognizer import build_recognizer
    from htr_tf.train.recognizer import CTCTrainer

    keras.utils.set_random_seed(0)
    texts = ["the cat", "of 42", "Sir, yes", "and to"]
    cs = Charset()
    geometry = LineGeometry(height=32)
    images, widths = line_batch([render_text_line(t, seed=i) for i, t in enumerate(texts)], geometry)
    images = model_input(images, widths)
    width = max(len(t) for t in texts)
    labels = np.array([cs.encode(t) + [0] * (width - len(t)) for t in texts], np.int32)
    x = {"image": images, "width": widths}
    config = RecognizerConfig(conv_filters=(8, 16, 32), conv_pool=((2, 2), (2, 2), (2, 1)), projection=32,
                              rnn_units=32, rnn_layers=1, dropout=0.0)
    net = build_recognizer(config, cs.num_classes, geometry.height)
    trainer = CTCTrainer(net)
    trainer.compile(optimizer=keras.optimizers.Adam(4e-3, clipnorm=5.0))

    losses = trainer.fit(x, labels, batch_size=4, epochs=25, verbose=0, shuffle=False).history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < 0.8 * losses[0]
    cer = 1.0
    for _ in range(12):  # at most 325 steps; typically about 175
        out = net(x, training=False)
        hyps = [d.text for d in GreedyDecoder().decode(np.asarray(out["log_probs"]), np.asarray(out["lengths"]), cs)]
        cer = score_lines(texts, hyps)["cer"]
        if cer <= 0.05:
            break
        trainer.fit(x, labels, batch_size=4, epochs=25, verbose=0, shuffle=False)
    assert cer <= 0.05, hyps


def test_impossible_alignments_are_skipped_not_nan():
    from htr_tf.models.recognizer import build_recognizer
    from htr_tf.train.recognizer import CTCTrainer

    net = build_recognizer(RecognizerConfig.tiny(), 10, 32)
    trainer = CTCTrainer(net)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = {"image": np.random.rand(2, 32, 16, 1).astype(np.float32), "width": np.array([16, 16], np.int32)}
    y = np.array([[1, 2, 3, 4, 5, 6], [1, 2, 0, 0, 0, 0]], np.int32)  # 6 labels cannot fit 2 frames
    logs = trainer.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["ctc_skipped"] == 1


# -- runs ------------------------------------------------------------------------------------------
class _Interrupt(keras.callbacks.Callback):
    """Simulates a killed run: fails when epoch ``at`` (0-based) begins."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt("simulated kill")


def test_interrupted_run_resumes_at_the_next_epoch(tiny_line_records, tmp_path):
    from htr_tf.train.recognizer import train_recognizer

    cfg = tiny_config(tiny_line_records, epochs=3, steps_per_epoch=2, keep_epochs=2)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_recognizer(cfg, out, callbacks=[_Interrupt(at=1)], verbose=0)
    first = json.loads((out / "history.json").read_text())["epochs"]
    assert [r["epoch"] for r in first] == [1]
    assert (out / "backup").is_dir() and (out / "best" / "model.keras").exists()

    result = train_recognizer(cfg, out, verbose=0)
    assert result.initial_epoch == 1
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert result.history[0] == first[0]  # the first epoch's record is kept, not re-run
    best = Recognizer.load(out / "best")
    last = Recognizer.load(out / "last")
    assert last.info["epoch"] == 3 and last.info["step"] == 6
    assert best.info["metrics"]["val_cer"] == min(r["val_cer"] for r in result.history)
    # keep_epochs: the last two epochs' bundles, across the interruption, ready to average
    assert sorted(p.name for p in (out / "epochs").iterdir()) == ["epoch-002", "epoch-003"]
    assert Recognizer.load(out / "epochs" / "epoch-003").info["epoch"] == 3
    assert (out / "train_config.yaml").exists() and any((out / "logs").rglob("events.out.tfevents*"))
    # the backup's weights must not resume into a different architecture
    with pytest.raises(ConfigError, match="different model.*downsample"):
        other = "stride" if cfg.model.downsample == "pool" else "pool"
        train_recognizer(cfg.replace(model=cfg.model.replace(downsample=other)), out, verbose=0)


def test_fine_tuning_starts_from_the_bundle_with_mixed_precision(tiny_line_records, tmp_path):
    from htr_tf.train.recognizer import train_recognizer

    keras.utils.set_random_seed(3)
    init = Recognizer.create(RecognizerConfig.tiny(), Charset(), TrainConfig().line_geometry(), {"origin": "test"})
    init.save(tmp_path / "init")
    seen: list = []

    class Capture(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append([np.array(w) for w in self.model.recognizer.get_weights()])

    # the recipe's own model differs: --init's architecture wins
    cfg = tiny_config(tiny_line_records, epochs=1, steps_per_epoch=1,
                      model=RecognizerConfig.tiny().replace(rnn_units=4), deskew=True)
    result = train_recognizer(cfg, tmp_path / "ft", init=tmp_path / "init", mixed_precision=True,
                              callbacks=[Capture()], verbose=0)
    for a, b in zip(seen[0], init.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    tuned = Recognizer.load(result.last)
    # provenance names the starting bundle without this machine's folders (htr_tf.provenance)
    assert tuned.info["init"] == f"{tmp_path.name}/init" and tuned.info["dtype_policy"] == "mixed_float16"
    assert tuned.config == init.config
    # the bundle's geometry, with the recipe's deskew: served as it was trained
    assert tuned.geometry == dataclasses.replace(init.geometry, deskew=True)
    assert all(layer.dtype_policy.name == "float32" for layer in tuned.model.layers)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


def test_fine_tuning_onto_a_larger_charset_keeps_the_old_output_units(tiny_line_records, tmp_path):
    from htr_tf.charset import load_charset
    from htr_tf.train.recognizer import train_recognizer

    keras.utils.set_random_seed(4)
    init = Recognizer.create(RecognizerConfig.tiny(), Charset(), TrainConfig().line_geometry(), {"origin": "test"})
    init.save(tmp_path / "init")
    seen: list = []

    class Capture(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(self.model.recognizer.get_layer("logits").get_weights())

    cfg = tiny_config(tiny_line_records, epochs=1, steps_per_epoch=1, charset="latin")
    result = train_recognizer(cfg, tmp_path / "ft", init=tmp_path / "init", callbacks=[Capture()], verbose=0)
    kernel, bias = seen[0]
    old_kernel, old_bias = init.model.get_layer("logits").get_weights()
    latin = load_charset("latin")
    assert kernel.shape == (old_kernel.shape[0], latin.num_classes)
    np.testing.assert_array_equal(kernel[:, :old_kernel.shape[1]], old_kernel)
    np.testing.assert_array_equal(bias[:old_bias.shape[0]], old_bias)
    assert np.all(bias[old_bias.shape[0]:] == np.median(old_bias[1:]))
    assert Recognizer.load(result.last).charset.chars == latin.chars
    with pytest.raises(ConfigError, match="does not extend"):
        train_recognizer(tiny_config(tiny_line_records, epochs=1, steps_per_epoch=1, charset="zyx"),
                         tmp_path / "bad", init=tmp_path / "init", verbose=0)


def test_grow_trains_a_wider_model_that_starts_as_the_init_bundle(tiny_line_records, tmp_path):
    from htr_tf.train.recognizer import train_recognizer

    keras.utils.set_random_seed(5)
    init = Recognizer.create(RecognizerConfig.tiny(), Charset(), TrainConfig().line_geometry(), {"origin": "test"})
    init.save(tmp_path / "init")
    x = {"image": np.random.default_rng(0).uniform(0, 1, (1, init.geometry.height, 64, 1)).astype("float32"),
         "width": np.array([64], "int32")}
    start: list = []

    class Capture(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            start.append(np.asarray(self.model.recognizer(x, training=False)["log_probs"]))

    wide = RecognizerConfig.tiny().replace(conv_filters=(6, 8, 12), rnn_units=12)
    cfg = tiny_config(tiny_line_records, epochs=1, steps_per_epoch=1, model=wide, grow=True)
    result = train_recognizer(cfg, tmp_path / "grown", init=tmp_path / "init", callbacks=[Capture()], verbose=0)
    np.testing.assert_allclose(start[0], np.asarray(init.model(x, training=False)["log_probs"]), atol=1e-4)
    grown = Recognizer.load(result.last)
    assert grown.config == wide and grown.model.count_params() > init.model.count_params()
    with pytest.raises(ConfigError, match="cannot start from the --init bundle"):
        train_recognizer(cfg.replace(model=RecognizerConfig.tiny().replace(rnn_units=4)), tmp_path / "bad",
                         init=tmp_path / "init", verbose=0)


def test_cli_trains_the_tiny_recipe(tiny_line_records, tmp_path, capsys):
    from htr_tf.cli import main

    out = tmp_path / "out"
    rc = main(["train", "recognizer", "--config", str(TINY_RECIPE), "--data", str(tiny_line_records),
               "--out", str(out), "--epochs", "1", "--steps-per-epoch", "2", "--quiet"])
    assert rc == 0
    assert "best bundle" in capsys.readouterr().out
    bundle = Recognizer.load(out / "best")
    assert bundle.charset == Charset() and bundle.info["epoch"] == 1
    assert TrainConfig.load(out / "train_config.yaml").steps_per_epoch == 2
    assert json.loads((out / "history.json").read_text())["epochs"][0]["epoch"] == 1


def test_cli_reports_user_errors_in_one_line(tiny_line_records, tmp_path, capsys):
    from htr_tf.cli import main

    rc = main(["train", "recognizer", "--config", str(TINY_RECIPE), "--out", str(tmp_path / "o")])
    assert rc == 1 and "no training data" in capsys.readouterr().err
    rc = main(["train", "recognizer", "--config", str(TINY_RECIPE), "--data", str(tmp_path / "missing"),
               "--out", str(tmp_path / "o")])
    assert rc == 1 and "not a record set" in capsys.readouterr().err
    rc = main(["train", "recognizer", "--config", str(TINY_RECIPE), "--data", f"{tiny_line_records}:nosuch",
               "--out", str(tmp_path / "o")])
    assert rc == 1 and "nosuch" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 2\nbatchsize: 3\n")
    rc = main(["train", "recognizer", "--config", str(bad), "--out", str(tmp_path / "o")])
    assert rc == 1 and "batchsize" in capsys.readouterr().err


# -- multi-worker ----------------------------------------------------------------------------------
def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_multiworker_trains_two_steps_on_two_local_workers(tiny_line_records, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    out = tmp_path / "mw"
    procs = []
    for i in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
               "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "-1"}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "htr_tf.cli", "train", "recognizer", "--config", str(TINY_RECIPE),
             "--data", str(tiny_line_records), "--out", str(out), "--epochs", "1", "--steps-per-epoch", "2",
             "--batch-size", "4", "--distribute", "multiworker", "--quiet"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    for p in procs:
        try:
            outputs.append(p.communicate(timeout=300)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    bundle = Recognizer.load(out / "best")
    assert bundle.info["replicas"] == 2 and bundle.info["distribute"] == "multiworker"
    assert bundle.info["step"] == 2
    assert not (out / ".workers").exists()  # the non-chief's private outputs are cleaned up


def test_training_names_synthetic_lines_an_older_generator_revision_drew(tiny_line_records, tmp_path, capsys):
    import shutil

    from htr_tf.train.recognizer import _open_sets

    old = tmp_path / "old-synth"
    shutil.copytree(tiny_line_records, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["source"] = "synth-v2"  # and no synth_revision: revision 1
    (old / "manifest.json").write_text(json.dumps(manifest))
    _open_sets(tiny_config(old, validation=DataSpec(str(old), "validation")))
    err = capsys.readouterr().err
    assert err.count("revision 1") == 1 and str(old) in err  # once, though it trains and validates
    _open_sets(tiny_config(tiny_line_records, validation=None))
    assert "revision" not in capsys.readouterr().err
