"""Train the line recogniser with ``keras.fit`` on the tf.data line pipeline.

The recipe is a :class:`TrainConfig` (``training/recognizer.yaml``).  The output directory::

    OUT/
      best/              the Recognizer bundle with the best validation CER so far
      last/              the bundle of the last finished epoch
      epochs/epoch-NNN/  with ``keep_epochs: N``, the bundles of the last N epochs (to average)
      train_config.yaml  the config this run used (with command-line overrides applied)
      history.json       one record per epoch: loss, val_cer, val_wer, val_loss, lr, lines/s
      logs/              TensorBoard event files
      backup/            BackupAndRestore state: re-running the same command resumes here

CTC stays out of the inference graph: :class:`CTCTrainer` wraps the functional recogniser
and computes :func:`~htr_tf.models.recognizer.ctc_loss` in ``compute_loss`` with the true
label lengths and the model's frame lengths.

>>> cfg = TrainConfig.load("training/recognizer-tiny.yaml")                  # doctest: +SKIP
>>> result = train_recognizer(cfg.replace(data=(DataSpec("data/synth"),)), "runs/tiny")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from htr_tf.charset import Charset
from htr_tf.config import Config
from htr_tf.errors import ConfigError, DataError
from htr_tf.geometry import LineGeometry
from htr_tf.models.recognizer import Recognizer, RecognizerConfig

__all__ = ["DataSpec", "TrainConfig", "TrainResult", "CTCTrainer", "train_recognizer",
           "build_learning_rate", "build_optimizer"]

TRAIN_CONFIG_VERSION = 1
OPTIMIZERS = ("adamw", "adam")
LR_SCHEDULES = ("cosine", "plateau", "constant")


@dataclass
class DataSpec(Config):
    """One record set: its directory, the split to read and its mixing weight."""

    records: str = ""
    split: str = "train"
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.records, str):
            raise ConfigError(f"DataSpec: records must be a path string, got {self.records!r}")
        if not float(self.weight) > 0:
            raise ConfigError(f"DataSpec: weight must be > 0, got {self.weight!r} for {self.records!r}")
        self.weight = float(self.weight)

    @classmethod
    def parse(cls, text: str, default_split: str = "train") -> "DataSpec":
        """``RECORDS[:SPLIT[:WEIGHT]]`` as given on the command line."""
        parts = text.split(":")
        if len(parts) > 3 or not parts[0]:
            raise ConfigError(f"bad record set {text!r}: expected RECORDS[:SPLIT[:WEIGHT]]")
        try:
            weight = float(parts[2]) if len(parts) > 2 else 1.0
        except ValueError:
            raise ConfigError(f"bad weight in {text!r}: {parts[2]!r} is not a number") from None
        return cls(records=parts[0], split=parts[1] if len(parts) > 1 and parts[1] else default_split,
                   weight=weight)


@dataclass
class TrainConfig(Config):
    """A training recipe for the recogniser (the YAML files under ``training/``).

    ``data`` lists the training record sets (mixed by ``weight``); ``validation`` the set
    that ``val_cer`` is measured on (when null: the first training set's ``validation``
    split if it has one).  ``steps_per_epoch`` 0 means one pass over the summed training
    lines.  ``lr_schedule``: ``cosine`` (linear warmup then cosine decay to
    ``min_learning_rate`` over all steps), ``plateau`` (halve on a ``val_cer`` plateau) or
    ``constant``.  ``init``: a bundle to fine-tune from (its architecture, charset and
    geometry are used; ``model`` is ignored unless ``grow``).  ``grow``: with ``init``, train
    ``model``, a wider version of the init bundle's network, started so that it computes what
    the bundle computes (:mod:`htr_tf.models.grow`).  ``charset``: the characters to
    recognise, empty for the training records' charset.
    """

    version: int = TRAIN_CONFIG_VERSION
    model: RecognizerConfig = field(default_factory=RecognizerConfig)
    data: tuple[DataSpec, ...] = ()
    validation: DataSpec | None = None
    charset: str = ""
    geometry: dict = field(default_factory=lambda: LineGeometry().to_dict())
    batch_size: int = 16
    epochs: int = 30
    steps_per_epoch: int = 0
    validation_max_lines: int = 0
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    lr_schedule: str = "cosine"
    warmup_steps: int = 200
    min_learning_rate: float = 1e-5
    plateau_patience: int = 3
    clipnorm: float = 5.0
    augment: Any = True
    shuffle_buffer: int = 2048
    bucket_by_width: bool = True
    early_stopping_patience: int = 0
    #: keep the bundles of the last N epochs in ``OUT/epochs`` (``htr train average`` members)
    keep_epochs: int = 0
    seed: int = 0
    init: str = ""
    grow: bool = False
    #: Level skewed lines before reading them (``geometry.deskew``, :func:`htr_tf.geometry.frame_line`);
    #: None keeps what the geometry says (the init bundle's, with ``init``).  The trained bundle
    #: carries the choice, so it is served as it was trained.
    deskew: bool | None = None

    def __post_init__(self) -> None:
        if self.version != TRAIN_CONFIG_VERSION:
            raise ConfigError(f"TrainConfig: version {self.version} is not supported "
                              f"(this htr-tf reads version {TRAIN_CONFIG_VERSION})")
        if isinstance(self.model, dict):
            self.model = RecognizerConfig.from_dict(self.model)
        self.data = tuple(_spec(d, "data") for d in (self.data or ()))
        if self.validation is not None:
            self.validation = _spec(self.validation, "validation")
        if not isinstance(self.geometry, dict):
            raise ConfigError(f"TrainConfig: geometry must be a mapping, got {self.geometry!r}")
        unknown = sorted(set(self.geometry) - set(LineGeometry.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"TrainConfig.geometry: unknown key(s) {unknown}; valid keys: "
                              f"{sorted(LineGeometry.__dataclass_fields__)}")
        self.geometry = LineGeometry.from_dict({**LineGeometry().to_dict(), **self.geometry}).to_dict()
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"TrainConfig: optimizer {self.optimizer!r}; valid: {list(OPTIMIZERS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"TrainConfig: lr_schedule {self.lr_schedule!r}; valid: {list(LR_SCHEDULES)}")
        for name in ("batch_size", "epochs"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"TrainConfig: {name} must be >= 1")
        for name in ("steps_per_epoch", "validation_max_lines", "warmup_steps", "early_stopping_patience",
                     "plateau_patience", "keep_epochs"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"TrainConfig: {name} must be >= 0")
        if not isinstance(self.augment, (bool, dict)):
            raise ConfigError(f"TrainConfig: augment must be true, false or a mapping of AugmentConfig "
                              f"fields, got {self.augment!r}")
        if not self.learning_rate > 0:
            raise ConfigError("TrainConfig: learning_rate must be > 0")

    def line_geometry(self) -> LineGeometry:
        return LineGeometry(**self.geometry)


def _spec(value: Any, where: str) -> DataSpec:
    if isinstance(value, DataSpec):
        return value
    if isinstance(value, str):
        return DataSpec.parse(value, "validation" if where == "validation" else "train")
    if isinstance(value, dict):
        return DataSpec.from_dict(value)
    raise ConfigError(f"TrainConfig.{where}: expected a mapping {{records, split, weight}} or "
                      f"'RECORDS[:SPLIT[:WEIGHT]]', got {value!r}")


@dataclass
class TrainResult:
    """What a training run produced."""

    out: Path
    best: Path | None
    last: Path | None
    history: list[dict]
    initial_epoch: int
    params: int


# -- the training model -------------------------------------------------------------------------
def _trainer_class():
    import keras
    from keras import ops

    from htr_tf.models.recognizer import ctc_loss

    from htr_tf.train.keras_compat import multiworker_safe_model

    class CTCTrainer(multiworker_safe_model()):
        """Wraps the functional recogniser for ``fit``: CTC in ``compute_loss``, not in the graph.

        Lines whose label cannot be aligned to their frames contribute zero and are counted in
        the ``ctc_skipped`` metric (the pipeline normally drops them before batching).
        """

        def __init__(self, recognizer: keras.Model, **kwargs):
            super().__init__(**kwargs)
            self.recognizer = recognizer
            self.skipped = keras.metrics.Sum(name="ctc_skipped")

        def call(self, inputs, training=None):
            return self.recognizer(inputs, training=training)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            import tensorflow as tf

            labels = ops.cast(y, "int32")
            lengths = ops.cast(y_pred["lengths"], "int32")
            per_line = ctc_loss(labels, y_pred["log_probs"], lengths)
            # CTC needs a frame per label plus a blank between repeats; it returns a large
            # finite or infinite loss otherwise, which must not reach the gradients
            repeats = ops.logical_and(ops.equal(labels[:, 1:], labels[:, :-1]), ops.not_equal(labels[:, 1:], 0))
            needed = (ops.cast(ops.count_nonzero(labels, axis=-1), "int32")
                      + ops.sum(ops.cast(repeats, "int32"), axis=-1))
            ok = ops.logical_and(ops.isfinite(per_line), needed <= lengths)
            self.skipped.update_state(ops.sum(ops.cast(ops.logical_not(ok), "float32")))
            per_line = ops.where(ok, per_line, ops.zeros_like(per_line))
            loss = ops.mean(per_line)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            if replicas > 1:  # gradients are summed over replicas
                loss = loss / replicas
            return loss

        @property
        def metrics(self):
            return [*super().metrics, self.skipped]

    return CTCTrainer


def CTCTrainer(recognizer):  # noqa: N802 - a factory that reads like the class it returns
    """The :class:`keras.Model` that trains ``recognizer`` with CTC (see ``_trainer_class``)."""
    return _trainer_class()(recognizer)


# -- optimizer and schedule ---------------------------------------------------------------------
def build_learning_rate(config: TrainConfig, total_steps: int) -> Any:
    """A float (constant, plateau) or a warmup + cosine ``LearningRateSchedule``."""
    import keras

    if config.lr_schedule != "cosine":
        return float(config.learning_rate)
    warmup = min(int(config.warmup_steps), max(total_steps - 1, 0))
    decay = max(total_steps - warmup, 1)
    alpha = min(config.min_learning_rate / config.learning_rate, 1.0)
    if warmup:
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate * 0.01, decay_steps=decay, alpha=alpha,
            warmup_target=config.learning_rate, warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=decay, alpha=alpha)


def build_optimizer(config: TrainConfig, total_steps: int) -> Any:
    import keras

    lr = build_learning_rate(config, total_steps)
    clip = {"clipnorm": config.clipnorm} if config.clipnorm else {}
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay, **clip)
    return keras.optimizers.Adam(learning_rate=lr, **clip)


# -- data ------------------------------------------------------------------------------------------
def _open_sets(config: TrainConfig) -> tuple[list[tuple[Any, DataSpec]], tuple[Any, DataSpec] | None]:
    from htr_tf.data.records import RecordSet
    from htr_tf.data.synth_lines import stale_revision_note

    if not config.data:
        raise ConfigError("no training data: give record sets with --data RECORDS[:SPLIT[:WEIGHT]] "
                          "or `data:` in the config")
    train = []
    for spec in config.data:
        rs = RecordSet(spec.records)
        if rs.count("lines", spec.split) == 0:
            raise DataError(f"{spec.records}: no lines in split {spec.split!r}; "
                            f"available: {rs.splits('lines')}")
        train.append((rs, spec))
    val = None
    spec = config.validation
    if spec is None:
        first = train[0][0]
        if first.count("lines", "validation") > 0:
            val = (first, DataSpec(records=config.data[0].records, split="validation"))
    else:
        rs = RecordSet(spec.records)
        if rs.count("lines", spec.split) == 0:
            raise DataError(f"{spec.records}: no lines in validation split {spec.split!r}; "
                            f"available: {rs.splits('lines')}")
        val = (rs, spec)
    for records, rs in {spec.records: rs for rs, spec in train + ([val] if val else [])}.items():
        note = stale_revision_note(rs.manifest)
        if note:  # training or validating on speckled synthetic lines
            print(f"note: {records}: {note}", file=sys.stderr)
    return train, val


def _config_charset(spec: str) -> Charset:
    """``charset:`` of a recipe: a name (``iam``, ``latin``), a charset file, or the characters."""
    import os

    from htr_tf.charset import NAMED_CHARSETS, load_charset

    if spec in NAMED_CHARSETS or (len(spec) > 4 and os.path.isfile(spec)):
        return load_charset(spec)
    return Charset(spec, replacement="#" if "#" in spec else "")


def _resolve_charset(config: TrainConfig, sets: Sequence[Any], init: Recognizer | None) -> Charset:
    """The charset to train: the recipe's, else the init bundle's, else the records'.

    A recipe charset that differs from the init bundle's must extend it (the bundle's
    characters first, in order): the network then keeps every learned weight and only the
    new characters' output units start fresh (:func:`htr_tf.models.grow.transfer_weights`).
    """
    if config.charset:
        cs = _config_charset(config.charset)
        if init is not None and not cs.chars.startswith(init.charset.chars):
            raise ConfigError(f"charset {config.charset!r} does not extend the --init bundle's charset "
                              f"({init.charset.num_classes - 1} characters): its characters must come first, "
                              "in the same order")
        return cs
    if init is not None:
        return init.charset
    first = sets[0].charset
    for rs in sets[1:]:
        if rs.charset.chars != first.chars:
            raise DataError(f"record sets {sets[0].path} and {rs.path} were written with different "
                            "charsets; set `charset:` in the config to train on both")
    return first


def _augment(config: TrainConfig) -> Any:
    if isinstance(config.augment, dict):
        from htr_tf.data.augment import AugmentConfig

        return AugmentConfig.from_dict(config.augment)
    return bool(config.augment)


def _train_dataset(train: list[tuple[Any, DataSpec]], config: TrainConfig, geometry: LineGeometry,
                   charset: Charset, model_config: RecognizerConfig, stats: Any) -> Any:
    """Mixed, augmented, repeated, width-bucketed training batches; lines whose label cannot
    fit the model's frames are dropped by the pipeline (counted in ``stats.too_long``)."""
    from htr_tf.data.pipelines import mixed_line_dataset

    return mixed_line_dataset(
        [(rs, spec.split, spec.weight) for rs, spec in train], batch_size=config.batch_size,
        geometry=geometry, charset=charset, training=True, augment=_augment(config),
        shuffle_buffer=config.shuffle_buffer, seed=config.seed, repeat=True,
        bucket_by_width=config.bucket_by_width, drop_remainder=False,
        max_label_for_width=model_config.frame_lengths, stats=stats)


def _val_dataset(val: tuple[Any, DataSpec], config: TrainConfig, geometry: LineGeometry,
                 charset: Charset) -> Any:
    """Validation batches, every line once, no augmentation (nothing dropped)."""
    from htr_tf.data.pipelines import line_dataset

    rs, spec = val
    ds = line_dataset(rs, spec.split, batch_size=config.batch_size, geometry=geometry, charset=charset,
                      training=False, augment=False, repeat=False, bucket_by_width=config.bucket_by_width,
                      drop_remainder=False)
    if config.validation_max_lines:
        ds = ds.take(math.ceil(config.validation_max_lines / config.batch_size))
    return ds


# -- helpers ----------------------------------------------------------------------------------------
def attributions(manifests: Sequence[dict], init: Any = None) -> list[str]:
    """Attribution lines a model trained on record sets with these manifests must carry (CC BY
    data): those of the sets (``htr data xml-prepare --attribution``) and those the init bundle
    (any bundle kind) carried.  Every trainer stores them in ``info.attribution``."""
    out: list[str] = list((getattr(init, "info", None) or {}).get("attribution", []) if init is not None else [])
    for manifest in manifests:
        out += list((manifest.get("info") or {}).get("attribution", []) or [])
    return list(dict.fromkeys(a for a in out if a))



@contextlib.contextmanager
def _dtype_policy(name: str) -> Iterator[None]:
    import keras

    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(old)


def _environment() -> dict:
    import keras
    import tensorflow as tf

    from htr_tf import __version__

    return {"htr_tf": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "node": platform.node()}


# -- the run ----------------------------------------------------------------------------------------
def train_recognizer(config: TrainConfig, out: str | os.PathLike, *, distribute: str = "none",
                     mixed_precision: bool = False, init: str | os.PathLike | None = None,
                     callbacks: Sequence[Any] = (), verbose: int = 1) -> TrainResult:
    """Train (or resume, or fine-tune) a recogniser; see the module docstring for ``out``.

    Re-running with the same ``out`` resumes from the last finished epoch.  ``init`` (or
    ``config.init``) fine-tunes from an existing bundle.  ``callbacks`` are appended to the
    built-in ones (tests use them to interrupt a run).
    """
    import keras
    import tensorflow as tf

    from htr_tf.train import callbacks as cbs
    from htr_tf.train.distribute import (is_chief, make_strategy, set_mixed_precision, shard_by_data,
                                         worker_dir)

    out = Path(out)
    strategy = make_strategy(distribute)  # first: MultiWorkerMirroredStrategy must precede other ops
    init = str(init) if init else (config.init or "")
    if init and config.init != init:
        config = config.replace(init=init)
    keras.utils.set_random_seed(config.seed)

    init_bundle = Recognizer.load(init) if init else None
    model_config = init_bundle.config if init_bundle and not config.grow else config.model
    if init_bundle is not None and config.grow:
        from htr_tf.models.grow import check_growable

        check_growable(init_bundle.config, model_config)
    geometry = init_bundle.geometry if init_bundle else config.line_geometry()
    if config.deskew is not None:
        geometry = dataclasses.replace(geometry, deskew=bool(config.deskew))
    model_config.check_geometry(geometry)
    train_sets, val_set = _open_sets(config)
    charset = _resolve_charset(config, [rs for rs, _ in train_sets], init_bundle)

    chief = is_chief(strategy)
    wdir = worker_dir(out, strategy)
    wdir.mkdir(parents=True, exist_ok=True)
    _check_resumable(out, wdir, config, model_config)
    if chief:
        config.save(out / "train_config.yaml")

    steps = config.steps_per_epoch or max(
        1, math.ceil(sum(rs.count("lines", spec.split) for rs, spec in train_sets) / config.batch_size))
    total_steps = steps * config.epochs
    policy = set_mixed_precision(mixed_precision)
    try:
        from htr_tf.data.pipelines import LineStats

        line_stats = LineStats()
        train_ds = shard_by_data(_train_dataset(train_sets, config, geometry, charset, model_config,
                                                line_stats))
        val_ds = _val_dataset(val_set, config, geometry, charset) if val_set else None

        with strategy.scope():
            from htr_tf.models.grow import transfer_weights
            from htr_tf.models.recognizer import build_recognizer

            net = build_recognizer(model_config, charset.num_classes, geometry.height)
            if init_bundle is not None:
                try:
                    if (charset.num_classes == init_bundle.charset.num_classes
                            and model_config == init_bundle.config):
                        net.set_weights(init_bundle.model.get_weights())
                    else:
                        transfer_weights(net, model_config, init_bundle.model, init_bundle.config)
                except ValueError as e:
                    raise ConfigError(f"--init {init}: weights do not fit the model: {e}") from None
            trainer = CTCTrainer(net)
            trainer.compile(optimizer=build_optimizer(config, total_steps), jit_compile=False)
            trainer.built = True  # its only layer is built; BackupAndRestore needs a built model

        # float32 copy of the network for validation and for the saved bundles
        with _dtype_policy("float32"):
            export_net = build_recognizer(model_config, charset.num_classes, geometry.height)

        def sync_export() -> keras.Model:
            export_net.set_weights(net.get_weights())
            return export_net

        monitor = "val_cer" if val_ds is not None else "loss"
        provenance = {
            "data": [dataclasses.asdict(s) for _, s in train_sets],
            "validation": dataclasses.asdict(val_set[1]) if val_set else None,
            "init": init or None, "distribute": distribute, "replicas": strategy.num_replicas_in_sync,
            "dtype_policy": policy, "environment": _environment(),
            "train_config": _plain(config.to_dict()),
            "attribution": attributions([rs.manifest for rs, _ in train_sets], init_bundle),
        }

        def make_bundle(epoch: int, logs: dict) -> Recognizer:
            info = {**provenance, "epoch": epoch + 1, "step": int(trainer.optimizer.iterations.numpy()),
                    "lines_seen": int(trainer.optimizer.iterations.numpy()) * config.batch_size,
                    "metrics": {k: float(v) for k, v in logs.items() if _is_number(v)},
                    "saved": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
            return Recognizer(sync_export(), model_config, charset, geometry, info)

        class _SyncForValidation(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                sync_export()

        first_epoch = _FirstEpoch()
        callback_list: list[Any] = [cbs.Throughput(config.batch_size, line_stats), _SyncForValidation()]
        if val_ds is not None:
            callback_list.append(cbs.TextMetrics(export_net, val_ds, charset, verbose=verbose))
        callback_list += [
            cbs.BundleCheckpoint(make_bundle, wdir / "best" if chief else None,
                                 wdir / "last" if chief else None, monitor=monitor,
                                 epochs_dir=wdir / "epochs" if chief else None, keep_epochs=config.keep_epochs),
            cbs.HistoryFile(wdir / "history.json", extra={"monitor": monitor, "steps_per_epoch": steps,
                                                          "batch_size": config.batch_size}),
        ]
        if config.lr_schedule == "plateau":
            callback_list.append(keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, mode="min", factor=0.5, patience=config.plateau_patience,
                min_lr=config.min_learning_rate, verbose=verbose))
        if config.early_stopping_patience:
            callback_list.append(keras.callbacks.EarlyStopping(
                monitor=monitor, mode="min", patience=config.early_stopping_patience, verbose=verbose))
        if _has_tensorboard():
            callback_list.append(keras.callbacks.TensorBoard(log_dir=str(wdir / "logs"), write_graph=False,
                                                             update_freq="epoch"))
        elif verbose:
            print("note: the tensorboard package is not installed; no TensorBoard logs "
                  "(pip install tensorboard)", flush=True)
        callback_list += [
            keras.callbacks.BackupAndRestore(backup_dir=str(wdir / "backup"), save_freq="epoch",
                                             delete_checkpoint=False),
            first_epoch,
            *callbacks,
        ]
        if verbose:
            print(f"training {net.count_params():,} parameters on {strategy.num_replicas_in_sync} "
                  f"replica(s), {steps} steps x {config.epochs} epochs of {config.batch_size} lines, "
                  f"dtype policy {policy}, output {out}", flush=True)
        history = trainer.fit(train_ds, epochs=config.epochs, steps_per_epoch=steps,
                              callbacks=callback_list, verbose=verbose, shuffle=False)
    finally:
        set_mixed_precision(False)

    if not chief:
        shutil.rmtree(wdir, ignore_errors=True)
        with contextlib.suppress(OSError):
            wdir.parent.rmdir()  # .workers, once the last non-chief has cleaned up
    hist_path = out / "history.json"
    records = json.loads(hist_path.read_text())["epochs"] if hist_path.exists() else []
    best = out / "best" if (out / "best").exists() else None
    last = out / "last" if (out / "last").exists() else None
    return TrainResult(out=out, best=best, last=last, history=records,
                       initial_epoch=first_epoch.epoch if first_epoch.epoch is not None else config.epochs,
                       params=int(net.count_params()))


def _first_epoch_class():
    import keras

    class FirstEpoch(keras.callbacks.Callback):
        """Remembers the epoch index that ``fit`` started at (after BackupAndRestore)."""

        def __init__(self):
            super().__init__()
            self.epoch: int | None = None

        def on_epoch_begin(self, epoch, logs=None):
            if self.epoch is None:
                self.epoch = epoch

    return FirstEpoch


def _FirstEpoch():  # noqa: N802
    return _first_epoch_class()()


def _check_resumable(out: Path, wdir: Path, config: TrainConfig, model_config: RecognizerConfig) -> None:
    """Refuse to resume a run of another architecture (its backup weights would load into
    a model that computes something else when only non-weight settings differ)."""
    previous = out / "train_config.yaml"
    if not (wdir / "backup").exists() or not previous.exists():
        return
    try:
        before = TrainConfig.load(previous)
    except ConfigError as e:
        raise ConfigError(f"{out} holds a run whose train_config.yaml cannot be read ({e}); "
                          "use a new --out") from None
    if before.init != config.init:
        raise ConfigError(f"{out} holds a run with init={before.init!r}, not {config.init!r}; "
                          "use a new --out, or the same --init to resume it")
    if not before.init and before.model != model_config:
        changed = sorted(k for k, v in model_config.to_dict().items() if before.model.to_dict().get(k) != v)
        raise ConfigError(f"{out} holds a run of a different model (changed: {', '.join(changed)}); "
                          "use a new --out, or the same model config to resume it")


def _has_tensorboard() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _is_number(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x
