"""Averaging bundles: the weighted mean of every weight, every bundle kind, and refusal of unlike members."""

import json

import numpy as np
import pytest

from htr_tf.charset import Charset
from htr_tf.cli import main
from htr_tf.errors import ConfigError
from htr_tf.geometry import LineGeometry
from htr_tf.models.average import average_bundles, average_recognizers
from htr_tf.models.lines import LineDetector, LineDetectorConfig
from htr_tf.models.recognizer import Recognizer, RecognizerConfig

CONFIG = RecognizerConfig(conv_filters=(4, 6), conv_pool=((2, 2), (2, 2)), projection=8, rnn_units=5,
                          rnn_layers=1, dropout=0.0)
GEOMETRY = LineGeometry(height=16, max_width=256, min_width=16, width_multiple=4)
CHARSET = Charset("abc #")


def _bundle(path, seed, config=CONFIG, charset=CHARSET, epoch=1):
    rec = Recognizer.create(config, charset, GEOMETRY, info={"epoch": epoch, "metrics": {"val_cer": 0.1 * seed}})
    rng = np.random.default_rng(seed)
    rec.model.set_weights([rng.normal(0, 1, w.shape).astype(w.dtype) if w.ndim else w
                           for w in rec.model.get_weights()])
    rec.save(path)
    return rec


def test_average_is_the_weighted_mean_of_every_weight(tmp_path):
    a = _bundle(tmp_path / "a", 1, epoch=3)
    b = _bundle(tmp_path / "b", 2, epoch=4)
    avg = average_recognizers([tmp_path / "a", tmp_path / "b"], weights=[3, 1])
    for got, wa, wb in zip(avg.model.get_weights(), a.model.get_weights(), b.model.get_weights()):
        np.testing.assert_allclose(got, 0.75 * wa + 0.25 * wb, rtol=1e-5, atol=1e-6)
    members = avg.info["averaged_from"]
    assert [m["epoch"] for m in members] == [3, 4]
    assert [m["weight"] for m in members] == [0.75, 0.25]
    assert "metrics" not in avg.info  # the members' metrics are not the average's
    avg.save(tmp_path / "avg")
    again = Recognizer.load(tmp_path / "avg")
    x = np.random.default_rng(0).uniform(0, 1, (1, 16, 40, 1)).astype("float32")
    np.testing.assert_allclose(again.log_probs(x, [40])[0], avg.log_probs(x, [40])[0], atol=1e-5)


def _taller(path, height, **rules):
    import dataclasses

    geometry = dataclasses.replace(GEOMETRY, height=height, **rules)
    Recognizer.create(CONFIG, CHARSET, geometry, info={"epoch": 1}).save(path)
    return path


def test_unlike_bundles_and_bad_weights_are_refused(tmp_path):
    _bundle(tmp_path / "a", 1)
    _bundle(tmp_path / "wider", 2, config=RecognizerConfig(**{**CONFIG.to_dict(), "rnn_units": 6}))
    _bundle(tmp_path / "chars", 3, charset=Charset("abcd #"))
    with pytest.raises(ConfigError, match="architecture differs"):
        average_recognizers([tmp_path / "a", tmp_path / "wider"])
    with pytest.raises(ConfigError, match="charset differs"):
        average_recognizers([tmp_path / "a", tmp_path / "chars"])
    with pytest.raises(ConfigError, match="geometry differs"):
        average_recognizers([tmp_path / "a", _taller(tmp_path / "taller", GEOMETRY.height + 8)])
    # re-reading rules are how lines are read, not the network: the first member's are kept
    _taller(tmp_path / "rereads", GEOMETRY.height, reread_sparse=0.3, reread_density=0.5)
    assert average_recognizers([tmp_path / "rereads", tmp_path / "a"]).geometry.reread_sparse == 0.3
    with pytest.raises(ConfigError, match="at least two"):
        average_recognizers([tmp_path / "a"])
    with pytest.raises(ConfigError, match="2 weights for 3"):
        average_recognizers([tmp_path / "a"] * 3, weights=[1, 1])
    with pytest.raises(ConfigError, match="non-negative"):
        average_recognizers([tmp_path / "a"] * 2, weights=[1, -1])


def test_cli_averages_and_reports_errors_in_one_line(tmp_path, capsys):
    _bundle(tmp_path / "a", 1)
    _bundle(tmp_path / "b", 2)
    assert main(["train", "average", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "avg"),
                 "--weights", "1,1"]) == 0
    meta = json.loads((tmp_path / "avg" / "htr.json").read_text())
    assert len(meta["info"]["averaged_from"]) == 2
    assert main(["train", "average", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "x"),
                 "--weights", "1,one"]) == 1
    assert "--weights" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def _detector(path, seed):
    det = LineDetector.create(LineDetectorConfig.tiny(), {"epoch": seed})
    rng = np.random.default_rng(seed)
    det.model.set_weights([rng.normal(0, 1, w.shape).astype(w.dtype) for w in det.model.get_weights()])
    det.save(path)
    return det


def test_line_detectors_interpolate_and_kinds_do_not_mix(tmp_path):
    a = _detector(tmp_path / "start", 1)
    b = _detector(tmp_path / "finetuned", 2)
    mid = average_bundles([tmp_path / "start", tmp_path / "finetuned"], weights=[1, 1])
    assert isinstance(mid, LineDetector)
    for got, wa, wb in zip(mid.model.get_weights(), a.model.get_weights(), b.model.get_weights()):
        np.testing.assert_allclose(got, 0.5 * wa + 0.5 * wb, rtol=1e-5, atol=1e-6)
    mid.save(tmp_path / "mid")
    assert LineDetector.load(tmp_path / "mid").info["averaged_from"][1]["epoch"] == 2
    _bundle(tmp_path / "rec", 1)
    with pytest.raises(ConfigError, match="recognizer bundle cannot be averaged with"):
        average_bundles([tmp_path / "start", tmp_path / "rec"])
    with pytest.raises(ConfigError, match="not a recognizer bundle"):
        average_recognizers([tmp_path / "start", tmp_path / "finetuned"])
