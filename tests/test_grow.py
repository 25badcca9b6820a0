"""A wider recogniser started from a trained one computes the same thing at step 0."""

import numpy as np
import pytest

from htr_tf.errors import ConfigError
from htr_tf.models.grow import check_growable, transfer_weights
from htr_tf.models.recognizer import RecognizerConfig, build_recognizer

SMALL = dict(conv_filters=(4, 6), conv_pool=((2, 2), (2, 2)), projection=8, rnn_units=5, rnn_layers=2,
             dropout=0.1)
HEIGHT = 16


def _randomised(cfg: RecognizerConfig, classes: int, seed: int = 0):
    """A source model whose every weight (batch-norm statistics included) is far from init."""
    net = build_recognizer(cfg, classes, HEIGHT)
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.normal(1, .3, g.shape), rng.normal(0, .3, b.shape),
                               rng.normal(0, .3, m.shape), rng.uniform(.5, 2, v.shape)])
            continue
        if layer.get_weights():
            layer.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in layer.get_weights()])
    return net


def _inputs(seed: int = 1):
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 1, (2, HEIGHT, 40, 1)).astype("float32")
    return {"image": image, "width": np.array([40, 23], "int32")}


@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
def test_wider_network_computes_the_same_log_probs(rnn_type):
    small = RecognizerConfig(**SMALL, rnn_type=rnn_type)
    wide = RecognizerConfig(**{**SMALL, "conv_filters": (7, 9), "projection": 12, "rnn_units": 8},
                            rnn_type=rnn_type)
    source = _randomised(small, 10)
    net = build_recognizer(wide, 10, HEIGHT)
    assert transfer_weights(net, wide, source, small) == 0
    x = _inputs()
    want = source(x, training=False)
    got = net(x, training=False)
    np.testing.assert_array_equal(np.asarray(got["lengths"]), np.asarray(want["lengths"]))
    n = int(want["lengths"][1])
    np.testing.assert_allclose(np.asarray(got["log_probs"])[0], np.asarray(want["log_probs"])[0], atol=1e-4)
    np.testing.assert_allclose(np.asarray(got["log_probs"])[1, :n], np.asarray(want["log_probs"])[1, :n],
                               atol=1e-4)
    assert net.count_params() > source.count_params()


def test_added_classes_keep_the_old_classes_ratios():
    small = RecognizerConfig(**SMALL)
    wide = RecognizerConfig(**{**SMALL, "rnn_units": 7})
    source = _randomised(small, 10)
    net = build_recognizer(wide, 13, HEIGHT)
    assert transfer_weights(net, wide, source, small) == 3
    x = _inputs()
    want = np.asarray(source(x, training=False)["log_probs"])[0]
    got = np.asarray(net(x, training=False)["log_probs"])[0]
    old = got[:, :10] - np.log(np.exp(got[:, :10]).sum(-1, keepdims=True))
    np.testing.assert_allclose(old, want, atol=1e-4)
    bias = net.get_layer("logits").get_weights()[1]
    assert np.allclose(bias[10:], np.median(source.get_layer("logits").get_weights()[1][1:]))


@pytest.mark.parametrize("change", [
    {"conv_filters": (3, 6)},                    # narrower
    {"conv_filters": (4, 6, 8), "conv_pool": ((2, 2), (2, 2), (1, 1))},  # another block
    {"rnn_layers": 3},
    {"projection": 0},
    {"conv_pool": ((2, 2), (2, 1))},
    {"rnn_units": 4},
    {"separable_blocks": (1,), "conv_filters": (5, 6)},
])
def test_what_cannot_grow_is_named(change):
    with pytest.raises(ConfigError, match="cannot start from the --init bundle"):
        check_growable(RecognizerConfig(**SMALL), RecognizerConfig(**{**SMALL, **change}))


def test_separable_blocks_keep_their_weights_while_the_rnn_grows():
    small = RecognizerConfig(**SMALL, separable_blocks=(1,))
    wide = RecognizerConfig(**{**SMALL, "rnn_units": 9}, separable_blocks=(1,))
    source = _randomised(small, 10)
    net = build_recognizer(wide, 10, HEIGHT)
    transfer_weights(net, wide, source, small)
    x = _inputs()
    np.testing.assert_allclose(np.asarray(net(x, training=False)["log_probs"])[0],
                               np.asarray(source(x, training=False)["log_probs"])[0], atol=1e-4)


def test_fewer_classes_is_refused():
    small = RecognizerConfig(**SMALL)
    source = _randomised(small, 10)
    net = build_recognizer(small, 8, HEIGHT)
    with pytest.raises(ConfigError, match="charset may only grow"):
        transfer_weights(net, small, source, small)
