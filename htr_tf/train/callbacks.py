"""Keras callbacks for recogniser training.

* :class:`TextMetrics` decodes the validation set greedily after each epoch and adds
  ``val_cer``, ``val_wer`` and ``val_loss`` (pooled: total edits / total reference length,
  computed with jiwer) to the epoch logs, so later callbacks (checkpointing, early stopping,
  TensorBoard, history) see them.  Put it first.
* :class:`BundleCheckpoint` saves the :class:`~htr_tf.models.recognizer.Recognizer` bundle:
  ``OUT/best`` when the monitored metric improves, ``OUT/last`` every epoch.
* :class:`HistoryFile` keeps ``history.json`` (one record per epoch, rewritten atomically,
  consistent across resumed runs).
* :class:`Throughput` logs training lines per second and the learning rate.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np

from htr_tf.charset import Charset
from htr_tf.fileio import atomic_write_text
from htr_tf.decode.ctc import GreedyDecoder
from htr_tf.metrics import score_lines
from htr_tf.models.recognizer import Recognizer, ctc_loss

__all__ = ["TextMetrics", "BundleCheckpoint", "HistoryFile", "Throughput"]


class TextMetrics(keras.callbacks.Callback):
    """Greedy CER/WER and CTC loss on a validation dataset, added to the epoch logs.

    ``dataset`` yields ``({"image", "width"}, labels)`` batches and must be finite;
    ``inference_model`` returns ``{"log_probs", "lengths"}``.
    """

    def __init__(self, inference_model: keras.Model, dataset: Any, charset: Charset,
                 prefix: str = "val_", verbose: int = 1, max_batches: int | None = None):
        super().__init__()
        self.inference_model = inference_model
        self.dataset = dataset
        self.charset = charset
        self.prefix = prefix
        self.verbose = verbose
        self.max_batches = max_batches
        self._step = None
        self.last_examples: list[tuple[str, str]] = []

    def _predict_fn(self) -> Callable:
        import tensorflow as tf

        if self._step is None:
            model = self.inference_model

            @tf.function(reduce_retracing=True)
            def step(inputs, labels):
                out = model(inputs, training=False)
                return out["log_probs"], out["lengths"], ctc_loss(labels, out["log_probs"], out["lengths"])

            self._step = step
        return self._step

    def evaluate(self) -> dict[str, float]:
        """Run the validation pass; returns ``{"cer", "wer", "loss", "lines"}``."""
        step = self._predict_fn()
        greedy = GreedyDecoder()
        refs: list[str] = []
        hyps: list[str] = []
        losses: list[np.ndarray] = []
        for i, (inputs, labels) in enumerate(self.dataset):
            if self.max_batches is not None and i >= self.max_batches:
                break
            lp, lengths, loss = step(inputs, labels)
            hyps += [d.text for d in greedy.decode(lp.numpy(), lengths.numpy(), self.charset)]
            refs += [self.charset.decode(row) for row in labels.numpy()]
            losses.append(loss.numpy())
        rates = score_lines(refs, hyps)
        all_losses = np.concatenate(losses) if losses else np.zeros((0,), np.float32)
        finite = all_losses[np.isfinite(all_losses)]
        self.last_examples = list(zip(refs[:3], hyps[:3]))
        nan = float("nan")
        return {"cer": nan if rates["cer"] is None else rates["cer"], "wer": nan if rates["wer"] is None else rates["wer"],
                "loss": float(finite.mean()) if finite.size else float("nan"), "lines": len(refs)}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        t0 = time.perf_counter()
        result = self.evaluate()
        if logs is not None:
            for k in ("cer", "wer", "loss"):
                logs[self.prefix + k] = result[k]
        if self.verbose:
            ex = "; ".join(f"{r!r} -> {h!r}" for r, h in self.last_examples[:1])
            print(f"epoch {epoch + 1}: {self.prefix}cer {result['cer']:.4f} - {self.prefix}wer "
                  f"{result['wer']:.4f} - {self.prefix}loss {result['loss']:.3f} on {result['lines']} lines "
                  f"({time.perf_counter() - t0:.1f}s)  e.g. {ex}", file=sys.stdout, flush=True)


class BundleCheckpoint(keras.callbacks.Callback):
    """Save the bundle (recogniser or layout model): ``best_dir`` when ``monitor`` improves,
    ``last_dir`` each epoch, and, with ``keep_epochs`` > 0, ``epochs_dir/epoch-NNN`` for the last
    ``keep_epochs`` epochs (members for checkpoint averaging, :func:`htr_tf.models.average.average_bundles`).

    ``make_bundle(epoch, logs)`` returns the bundle to save (with float32 weights and ``info``
    filled in).  On a resumed run the best value is read back from the
    existing ``best_dir`` bundle, so a worse epoch never overwrites a better one.
    """

    def __init__(self, make_bundle: Callable[[int, dict], Recognizer], best_dir: Path | None,
                 last_dir: Path | None, monitor: str = "val_cer", mode: str = "min", verbose: int = 1,
                 epochs_dir: Path | None = None, keep_epochs: int = 0):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.epochs_dir = Path(epochs_dir) if epochs_dir and keep_epochs > 0 else None
        self.keep_epochs = keep_epochs
        self.make_bundle = make_bundle
        self.best_dir = Path(best_dir) if best_dir else None
        self.last_dir = Path(last_dir) if last_dir else None
        self.monitor, self.mode, self.verbose = monitor, mode, verbose
        self.best = self._previous_best()

    def _previous_best(self) -> float:
        worst = math.inf if self.mode == "min" else -math.inf
        if self.best_dir is None or not (self.best_dir / "htr.json").exists():
            return worst
        try:
            info = json.loads((self.best_dir / "htr.json").read_text(encoding="utf-8")).get("info", {})
            value = info.get("metrics", {}).get(self.monitor)
            return float(value) if value is not None else worst
        except (OSError, ValueError, TypeError):
            return worst

    def _improved(self, value: float) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        value = logs.get(self.monitor)
        value = float(value) if value is not None else None
        improved = self.best_dir is not None and self._improved(value)
        if not improved and self.last_dir is None and self.epochs_dir is None:
            return
        bundle = self.make_bundle(epoch, logs)
        if self.last_dir is not None:
            bundle.save(self.last_dir)
        if self.epochs_dir is not None:
            bundle.save(self.epochs_dir / f"epoch-{epoch + 1:03d}")
            kept = sorted(p for p in self.epochs_dir.glob("epoch-*") if p.is_dir())
            for old in kept[:-self.keep_epochs]:
                shutil.rmtree(old, ignore_errors=True)
        if improved:
            bundle.save(self.best_dir)
            if self.verbose:
                print(f"epoch {epoch + 1}: {self.monitor} improved from {self.best:.4f} to {value:.4f}, "
                      f"saved {self.best_dir}", flush=True)
            self.best = value


class HistoryFile(keras.callbacks.Callback):
    """Write ``history.json``: ``{"epochs": [{"epoch": 1, "loss": ..., ...}, ...]}``.

    Records of epochs at or after a resumed run's current epoch are replaced, so the file
    is the history of the run as it finally happened.
    """

    def __init__(self, path: Path, extra: dict | None = None):
        super().__init__()
        self.path = Path(path)
        self.extra = dict(extra or {})

    def _read(self) -> list[dict]:
        try:
            return list(json.loads(self.path.read_text(encoding="utf-8")).get("epochs", []))
        except (OSError, ValueError, AttributeError):
            return []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        record = {"epoch": epoch + 1, **{k: _number(v) for k, v in (logs or {}).items()}}
        epochs = [r for r in self._read() if int(r.get("epoch", 0)) < epoch + 1] + [record]
        atomic_write_text(self.path, json.dumps({**self.extra, "epochs": epochs}, indent=2))


class Throughput(keras.callbacks.Callback):
    """Add ``lines_per_s`` (training lines per second of the epoch) and ``learning_rate`` to the logs.

    With the pipeline's ``LineStats`` the lines are counted as they leave the pipeline
    (bucketed batches of wide lines are smaller than ``batch_size``); without, as
    ``steps x batch_size``.  Also logs ``lines_dropped``: lines too long for their frames.
    """

    def __init__(self, batch_size: int, stats: Any = None):
        super().__init__()
        self.batch_size = batch_size
        self.stats = stats
        self._t0 = 0.0
        self._steps = 0
        self._lines0 = 0

    def _kept_and_dropped(self) -> tuple[int, int]:
        d = self.stats.as_dict()
        return d["seen"] - d["too_long"], d["too_long"]

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._t0 = time.perf_counter()
        self._steps = 0
        if self.stats is not None:
            self._lines0 = self._kept_and_dropped()[0]

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._steps += 1

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        dt = time.perf_counter() - self._t0
        lines = self._steps * self.batch_size
        if self.stats is not None:
            kept, dropped = self._kept_and_dropped()
            lines = kept - self._lines0
            logs["lines_dropped"] = dropped
        logs["lines_per_s"] = lines / max(dt, 1e-9)
        opt = getattr(self.model, "optimizer", None)
        if opt is not None:  # Keras evaluates a schedule at the current step here
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(opt.learning_rate))


def _number(v: Any) -> Any:
    try:
        return float(v)
    except (TypeError, ValueError):
        return v
