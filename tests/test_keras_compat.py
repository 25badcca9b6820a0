"""The private Keras internals of the multi-worker path (htr_tf/train/keras_compat.py).

These tests fail on a Keras upgrade that moves or changes them: re-read the internals, adapt
keras_compat.py, then add the version to TESTED_KERAS.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from htr_tf.errors import ConfigError
from htr_tf.train import keras_compat

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")


def test_only_tested_keras_versions_are_accepted():
    assert keras_compat.check_keras() == keras.__version__        # the pinned Keras is a tested one
    with pytest.raises(ConfigError, match=r"Keras 3\.99\.0.*keras_compat\.py.*TESTED_KERAS"):
        keras_compat.check_keras("3.99.0")


def test_the_private_names_still_exist_with_the_same_signatures():
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer
    from tensorflow.python.distribute.collective_all_reduce_strategy import CollectiveAllReduceExtended

    sig = inspect.signature(TensorFlowTrainer._maybe_symbolic_build)
    assert list(sig.parameters) == ["self", "iterator", "data_batch"]
    assert "distribute_strategy.reduce" in inspect.getsource(TensorFlowTrainer._maybe_symbolic_build)
    assert callable(getattr(CollectiveAllReduceExtended, "_in_multi_worker_mode"))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    assert model._compile_metrics is None                            # no compiled metrics: None
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    assert model._compile_metrics is not None


def test_a_model_on_the_safe_base_skips_the_reducing_build_under_a_strategy():
    base = keras_compat.multiworker_safe_model()
    assert issubclass(base, keras.Model)
    calls = []

    class Net(base):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            return self.dense(x)

        def _maybe_symbolic_build(self, iterator=None, data_batch=None):
            calls.append(keras_compat.needs_symbolic_build(self))
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])       # sets the trainer's distribute strategy
    with strategy.scope():
        net = Net()
        net(np.zeros((1, 3), np.float32))                             # built, as the recogniser is
        net.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    history = net.fit(x, x[:, :1], batch_size=4, epochs=2, verbose=0)
    assert calls and calls[0] is False and net.optimizer.built
    assert np.isfinite(history.history["loss"]).all()
    assert keras_compat.in_multi_worker_mode(strategy) is False
    logs = {"loss": tf.constant(1.0)}
    assert keras_compat.rank1_logs_for_multiworker(logs) is logs    # only multi-worker logs change
