"""Distribution strategies and mixed precision for training.

* ``none``: the default strategy (one device; TensorFlow still uses every CPU core).
* ``mirrored``: :class:`tf.distribute.MirroredStrategy` over the local GPUs.
* ``multiworker``: :class:`tf.distribute.MultiWorkerMirroredStrategy` over the machines in
  ``TF_CONFIG`` (``{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker",
  "index": i}}``); every worker runs the same command.

Batch sizes in configs are global (summed over replicas); Keras splits each batch across
replicas.  Input datasets are sharded by data (``AutoShardPolicy.DATA``): every worker reads
the records and keeps its share of batches, which works for any number of shards and for
mixed record sets.  Only the chief writes bundles, history and logs; the other workers write
theirs under ``OUT/.workers/worker-I`` so checkpoints never collide.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from htr_tf.errors import ConfigError

STRATEGIES = ("none", "mirrored", "multiworker")


def make_strategy(kind: str = "none") -> Any:
    """The :class:`tf.distribute.Strategy` for ``kind`` (create it before any other TF op)."""
    import tensorflow as tf

    if kind not in STRATEGIES:
        raise ConfigError(f"unknown distribution strategy {kind!r}; valid: {list(STRATEGIES)}")
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    tf_config = os.environ.get("TF_CONFIG")
    if not tf_config:
        raise ConfigError("--distribute multiworker needs TF_CONFIG in the environment, e.g. "
                          '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                          '"task": {"type": "worker", "index": 0}}')
    try:
        spec = json.loads(tf_config)
        spec["cluster"], spec["task"]["type"], int(spec["task"]["index"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"TF_CONFIG is not a valid cluster spec ({type(e).__name__}: {e}): {tf_config}") from None
    return tf.distribute.MultiWorkerMirroredStrategy()


def task_of(strategy: Any) -> tuple[str | None, int]:
    """``(task_type, task_id)`` of this process; ``(None, 0)`` when not multi-worker."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: Any) -> bool:
    """True for the process that writes outputs: the chief, or worker 0 when there is no chief."""
    task_type, task_id = task_of(strategy)
    if task_type is None or task_type == "chief":
        return True
    if task_type == "worker" and task_id == 0:
        cluster = strategy.cluster_resolver.cluster_spec().as_dict()
        return "chief" not in cluster
    return False


def worker_dir(out: Path, strategy: Any) -> Path:
    """Where this process writes: ``out`` on the chief, a private folder on the other workers."""
    if is_chief(strategy):
        return Path(out)
    task_type, task_id = task_of(strategy)
    return Path(out) / ".workers" / f"{task_type}-{task_id}"


def shard_by_data(dataset: Any) -> Any:
    """Set ``AutoShardPolicy.DATA`` on a dataset (see the module docstring)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def set_mixed_precision(enabled: bool) -> str:
    """Set Keras' global dtype policy (``mixed_float16`` or ``float32``); returns its name.

    The recogniser keeps its classifier and log-softmax in float32 under either policy;
    ``compile`` wraps the optimizer in a loss-scale optimizer under ``mixed_float16``.
    """
    import keras

    name = "mixed_float16" if enabled else "float32"
    keras.config.set_dtype_policy(name)
    return name
