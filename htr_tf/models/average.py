"""Average the weights of bundles trained from one start (checkpoint averaging, model soups).

Epoch snapshots late in one run, or runs that started from the same bundle with other seeds or
data weights, lie in one basin of the loss; their weight average usually reads better than any
one of them (stochastic weight averaging, Izmailov et al., UAI 2018; model soups, Wortsman et
al., ICML 2022), and it costs no training.  Networks from different starts do not average:
their units are permuted, so the mean is noise.  Choose the members and check the average on a
validation split (``htr evaluate recognizer``, ``htr evaluate lines``), never on the test split.

It works for every bundle kind: recognisers, line detectors and handwritten-area models.  With
a fine-tuned bundle and the bundle it started from, the weights interpolate between the two
(WiSE-FT, Wortsman et al., CVPR 2022): part of the fine-tune's gain on the new data, part of the
start's behaviour on the old.

Batch-norm moving statistics are averaged like the other weights: close members have close
statistics, and the validation check catches the case where they do not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from htr_tf.errors import ConfigError

__all__ = ["average_bundles", "average_recognizers"]


def _member_summary(path: str | os.PathLike, info: dict) -> dict[str, Any]:
    metrics = info.get("metrics") or {}
    seed = (info.get("train_config") or {}).get("seed")
    return {"bundle": os.fspath(path), **({"seed": seed} if seed is not None else {}),
            **{k: info[k] for k in ("epoch", "step") if k in info},
            **{k: metrics[k] for k in ("val_cer", "val_wer") if k in metrics}}


def _bundle_class(kind: str) -> Any:
    if kind == "recognizer":
        from htr_tf.models.recognizer import Recognizer
        return Recognizer
    if kind == "lines":
        from htr_tf.models.lines import LineDetector
        return LineDetector
    if kind == "paragraph":
        from htr_tf.models.paragraph import ParagraphModel
        return ParagraphModel
    raise ConfigError(f"bundles of kind {kind!r} cannot be averaged")


def _bundle_kind(path: str | os.PathLike) -> str:
    from htr_tf.bundle import META_FILE
    from htr_tf.errors import ModelError

    meta = Path(path) / META_FILE
    try:
        kind = json.loads(meta.read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError) as e:
        raise ModelError(f"{path}: not a model bundle ({meta.name} unreadable: {e})") from None
    return str(kind)


def _compared(bundle: Any, what: str) -> Any:
    """What must agree for bundles to be one network: a recogniser's geometry without its
    re-reading rules (a bundle re-tuned to read lines again is still the same network)."""
    value = getattr(bundle, what, None)
    return value.network_input() if what == "geometry" and hasattr(value, "network_input") else value


def average_bundles(bundles: Sequence[str | os.PathLike], weights: Sequence[float] | None = None) -> Any:
    """The weighted mean of bundles of one kind, architecture (and, for recognisers, charset and
    geometry, re-reading rules aside: the first member's are kept).

    Returns the bundle object of that kind (:class:`~htr_tf.models.recognizer.Recognizer`,
    :class:`~htr_tf.models.lines.LineDetector`, :class:`~htr_tf.models.paragraph.ParagraphModel`)
    whose ``info`` is the first member's, with ``averaged_from`` listing every member (path,
    epoch, validation metrics) and its weight; a recogniser keeps the first member's tuned
    decoder settings.
    """
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

    kind = _bundle_kind(bundles[0])
    cls = _bundle_class(kind)
    first = cls.load(bundles[0])
    total = [np.zeros(v.shape, np.float64) for v in first.model.get_weights()]
    members = []
    for k, (path, share) in enumerate(zip(bundles, w)):
        if k and (other := _bundle_kind(path)) != kind:
            raise ConfigError(f"{path}: a {other} bundle cannot be averaged with {bundles[0]}, a {kind} bundle")
        bundle = first if k == 0 else cls.load(path)
        for what in ("config", "charset", "geometry"):
            if _compared(bundle, what) != _compared(first, what):
                name = "architecture" if what == "config" else what
                raise ConfigError(f"{path}: its {name} differs from {bundles[0]}'s; only bundles of one "
                                  "network (the same --init start) can be averaged")
        for i, value in enumerate(bundle.model.get_weights()):
            total[i] = total[i] + share * value.astype(np.float64)
        members.append({**_member_summary(path, bundle.info), "weight": round(float(share), 6)})
    first.model.set_weights([t.astype(np.float32) for t in total])
    info = {k: v for k, v in first.info.items() if k not in ("metrics", "saved")}
    first.info = {**info, "averaged_from": members}
    return first


def average_recognizers(bundles: Sequence[str | os.PathLike], weights: Sequence[float] | None = None) -> Any:
    """:func:`average_bundles` for recogniser bundles only (another kind is refused by name)."""
    if bundles and (kind := _bundle_kind(bundles[0])) != "recognizer":
        raise ConfigError(f"{bundles[0]}: a {kind} bundle, not a recognizer bundle")
    return average_bundles(bundles, weights)
