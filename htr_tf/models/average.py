"""Average the weights of recognisers trained from one start (checkpoint averaging, model soups).

Epoch snapshots late in one run, or runs that started from the same bundle with other seeds or
data weights, lie in one basin of the loss; their weight average usually reads better than any
one of them (stochastic weight averaging, Izmailov et al., UAI 2018; model soups, Wortsman et
al., ICML 2022), and it costs no training.  Networks from different starts do not average:
their units are permuted, so the mean is noise.  Choose the members and check the average on a
validation split (``htr evaluate recognizer``), never on the test split.

Batch-norm moving statistics are averaged like the other weights: close members have close
statistics, and the validation check catches the case where they do not.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from htr_tf.errors import ConfigError

__all__ = ["average_recognizers"]


def _member_summary(path: str | os.PathLike, info: dict) -> dict[str, Any]:
    metrics = info.get("metrics") or {}
    seed = (info.get("train_config") or {}).get("seed")
    return {"bundle": os.fspath(path), **({"seed": seed} if seed is not None else {}),
            **{k: info[k] for k in ("epoch", "step") if k in info},
            **{k: metrics[k] for k in ("val_cer", "val_wer") if k in metrics}}


def average_recognizers(bundles: Sequence[str | os.PathLike], weights: Sequence[float] | None = None) -> Any:
    """The weighted mean of recogniser bundles with one architecture, charset and geometry.

    Returns a :class:`~htr_tf.models.recognizer.Recognizer` whose ``info`` is the first
    member's, with ``averaged_from`` listing every member (path, epoch, validation metrics)
    and its weight; the first member's tuned decoder settings are kept.
    """
    from htr_tf.models.recognizer import Recognizer

    if len(bundles) < 2:
        raise ConfigError(f"averaging needs at least two bundles, got {len(bundles)}")
    if weights is None:
        weights = [1.0] * len(bundles)
    if len(weights) != len(bundles):
        raise ConfigError(f"{len(weights)} weights for {len(bundles)} bundles")
    w = np.asarray(weights, np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ConfigError(f"weights must be non-negative with a positive sum, got {list(weights)}")
    w = w / w.sum()

    first = Recognizer.load(bundles[0])
    total = [np.zeros(v.shape, np.float64) for v in first.model.get_weights()]
    members = []
    for k, (path, share) in enumerate(zip(bundles, w)):
        rec = first if k == 0 else Recognizer.load(path)
        for what, mine, theirs in (("architecture", rec.config, first.config),
                                   ("charset", rec.charset, first.charset),
                                   ("geometry", rec.geometry, first.geometry)):
            if mine != theirs:
                raise ConfigError(f"{path}: its {what} differs from {bundles[0]}'s; only bundles of one "
                                  "network (the same --init start) can be averaged")
        for i, value in enumerate(rec.model.get_weights()):
            total[i] = total[i] + share * value.astype(np.float64)
        members.append({**_member_summary(path, rec.info), "weight": round(float(share), 6)})
    first.model.set_weights([t.astype(np.float32) for t in total])
    info = {k: v for k, v in first.info.items() if k not in ("metrics", "saved")}
    first.info = {**info, "averaged_from": members}
    return first
