"""The private Keras internals the multi-worker training path depends on, in one checked place.

Training under ``tf.distribute.MultiWorkerMirroredStrategy`` needs two Keras (TensorFlow
backend) behaviours changed, and neither has a public hook:

* before the first step, ``TensorFlowTrainer._maybe_symbolic_build`` pulls one batch and
  all-reduces it across replicas only to learn shapes for a symbolic build.  Variable-width
  line batches differ between workers, so the reduce fails.  A model that is built and has
  no compiled losses or metrics (``_compile_metrics`` is None) needs no such build: only the
  optimizer's variables must exist (:func:`needs_symbolic_build`, :func:`build_optimizer`);
* every value ``train_step``/``test_step`` return is reduced with
  ``strategy.reduce("MEAN", v, axis=0)``, which fails for the scalars metrics return, and
  only in multi-worker mode (``strategy.extended._in_multi_worker_mode()``):
  :func:`rank1_logs_for_multiworker` gives them a leading axis of one.

:class:`MultiWorkerSafeModel` applies both to a ``keras.Model`` subclass.  The names it
touches are listed in :data:`PRIVATE_NAMES`; :func:`check_keras` refuses any Keras whose
major.minor version is not in :data:`TESTED_KERAS` with a message saying what to re-check,
and ``tests/test_keras_compat.py`` checks that the names still exist with the same
signatures, so a Keras upgrade fails loudly there instead of silently in a cluster.
"""

from __future__ import annotations

from typing import Any

from htr_tf.errors import ConfigError

__all__ = ["TESTED_KERAS", "PRIVATE_NAMES", "check_keras", "needs_symbolic_build", "build_optimizer",
           "in_multi_worker_mode", "rank1_logs_for_multiworker", "multiworker_safe_model"]

#: Keras versions (major.minor) whose internals below were read and tested.
TESTED_KERAS = ("3.15",)
#: The private attributes used here: (owner, name).
PRIVATE_NAMES = (
    ("keras.src.backend.tensorflow.trainer.TensorFlowTrainer", "_maybe_symbolic_build"),
    ("keras.Model (after compile)", "_compile_metrics"),
    ("tf.distribute.MultiWorkerMirroredStrategy.extended", "_in_multi_worker_mode"),
)


def check_keras(version: str | None = None) -> str:
    """The installed Keras version, or a :class:`ConfigError` when it is not one of :data:`TESTED_KERAS`."""
    if version is None:
        import keras

        version = keras.__version__
    if ".".join(version.split(".")[:2]) not in TESTED_KERAS:
        raise ConfigError(
            f"htr-tf's multi-worker training overrides private Keras internals "
            f"({', '.join(n for _, n in PRIVATE_NAMES)}) read in Keras {', '.join(TESTED_KERAS)}; this is "
            f"Keras {version}. Re-check htr_tf/train/keras_compat.py against it (tests/test_keras_compat.py) "
            f"and add its version to TESTED_KERAS, or install keras=={TESTED_KERAS[-1]}.*")
    return version


def needs_symbolic_build(model: Any) -> bool:
    """Whether Keras' shape-finding build (which all-reduces a batch) is needed for ``model``."""
    return not (model.built and all(getattr(layer, "built", True) for layer in model.layers)
                and getattr(model, "_compile_metrics", None) is None)


def build_optimizer(model: Any) -> None:
    """Create the optimizer's variables (what the symbolic build would have done for it)."""
    if model.optimizer is not None and not model.optimizer.built:
        with model.distribute_strategy.scope():
            model.optimizer.build(model.trainable_variables)


def in_multi_worker_mode(strategy: Any = None) -> bool:
    """Whether ``strategy`` (default: the current one) is a MultiWorkerMirroredStrategy across workers."""
    import tensorflow as tf

    strategy = strategy if strategy is not None else tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    return bool(getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)())


def rank1_logs_for_multiworker(logs: dict) -> dict:
    """``logs`` with scalars reshaped to ``[1]`` under multi-worker training (a no-op mean for
    Keras' reduce), unchanged otherwise."""
    if not in_multi_worker_mode():
        return logs
    from keras import ops

    return {k: ops.reshape(v, (1,)) if len(getattr(v, "shape", ())) == 0 else v for k, v in logs.items()}


_SAFE_MODEL: Any = None


def multiworker_safe_model() -> Any:
    """``MultiWorkerSafeModel``: a ``keras.Model`` whose steps and first build work under
    multi-worker training (see the module docstring); subclass it instead of ``keras.Model``."""
    global _SAFE_MODEL
    if _SAFE_MODEL is not None:
        return _SAFE_MODEL
    check_keras()
    import keras

    class MultiWorkerSafeModel(keras.Model):
        def train_step(self, data):
            return rank1_logs_for_multiworker(super().train_step(data))

        def test_step(self, data):
            return rank1_logs_for_multiworker(super().test_step(data))

        def _maybe_symbolic_build(self, iterator=None, data_batch=None):
            if not needs_symbolic_build(self):
                build_optimizer(self)
                return
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    _SAFE_MODEL = MultiWorkerSafeModel
    return _SAFE_MODEL
