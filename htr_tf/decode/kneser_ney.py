"""Interpolated modified Kneser-Ney estimation and the ARPA writer: the project's own path to an
n-gram model where KenLM's ``lmplz`` is not installed (no PyPI package ships it).

:func:`estimate_kneser_ney` computes what ``lmplz`` computes (Chen & Goodman 1998):
adjusted (continuation) counts for lower orders, discounts D1, D2, D3+ per order from the
count-of-counts, backoff weights that make every context's distribution sum to one, unigrams
interpolated with the uniform distribution, and count pruning whose removed mass goes to
the backoff.  :func:`write_arpa` writes the result as an ARPA file that KenLM loads.  A test
compares both with a committed ``lmplz`` output (``tests/fixtures/lmplz``).

>>> m = estimate_kneser_ney([["a", "b"], ["a", "c"]], order=2)
>>> m.vocab[:3], m.sizes()
(['<unk>', '<s>', '</s>'], [6, 5])
"""

from __future__ import annotations

import gzip
import io
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from htr_tf.errors import ConfigError, DataError
from htr_tf.fileio import atomic_path

__all__ = ["BOS", "EOS", "UNK", "NgramCounts", "estimate_kneser_ney", "prune_thresholds", "write_arpa"]

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
_SPECIAL = (BOS, EOS, UNK)


# -- the estimator ------------------------------------------------------------------------------
@dataclass
class _Order:
    """The n-grams of one order: ``key = prefix_index * V + last_token`` (sorted, unique)."""

    keys: np.ndarray          # int64 [M]
    prefix: np.ndarray        # int64 [M], index into order n-1 (0 for unigrams)
    last: np.ndarray          # int64 [M], token id
    suffix: np.ndarray        # int64 [M], index of the n-gram without its first token in order n-1
    first: np.ndarray         # int64 [M], first token id
    count: np.ndarray         # int64 [M], raw count
    adjusted: np.ndarray | None = None
    keep: np.ndarray | None = None
    logp: np.ndarray | None = None
    backoff: np.ndarray | None = None      # gamma as a context (float64, 1.0 when none)
    has_ext: np.ndarray | None = None


@dataclass
class NgramCounts:
    """An estimated model: vocabulary, per-order n-gram tables, discounts and notes."""

    vocab: list[str]
    orders: list[_Order]
    discounts: list[tuple[float, float, float]]
    notes: list[str] = field(default_factory=list)

    @property
    def order(self) -> int:
        return len(self.orders)

    def sizes(self) -> list[int]:
        """N-grams written per order (after pruning)."""
        return [int(o.keep.sum()) if o.keep is not None else len(o.keys) for o in self.orders]


_FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)


def _discounts(adjusted: np.ndarray, n: int, notes: list[str]) -> tuple[float, float, float]:
    """Chen & Goodman's D1, D2, D3+ from the count-of-counts t1..t4 (lmplz's fallback when undefined)."""
    t = [int((adjusted == k).sum()) for k in range(1, 5)]
    try:
        y = t[0] / (t[0] + 2 * t[1])
        d = tuple(k - (k + 1) * y * t[k] / t[k - 1] for k in (1, 2, 3))
    except ZeroDivisionError:
        d = (-1.0, -1.0, -1.0)
    # lmplz's test (adjust_counts.cc): a discount is bad below 0 or above its count; D3+ = 3
    # exactly (no 4-grams seen with count 4) is kept, not replaced by the fallback
    if not all(0.0 <= x <= k for k, x in zip((1, 2, 3), d)) or not all(math.isfinite(x) for x in d):
        notes.append(f"order {n}: count-of-counts {t} give no valid discounts; "
                     f"using the fallback {_FALLBACK_DISCOUNTS}")
        return _FALLBACK_DISCOUNTS
    return d  # type: ignore[return-value]


def estimate_kneser_ney(sentences: Iterable[Sequence[str]], order: int,
                        prune: Sequence[int] = (0,), progress: bool = False) -> NgramCounts:
    """Interpolated modified Kneser-Ney estimate of an ``order``-gram model (lmplz's method).

    ``sentences`` are token lists (without ``<s>``/``</s>``).  ``prune[k]`` is the count
    threshold of order ``k + 1`` (the last value repeats): n-grams whose raw count is
    at most it are left out unless a kept longer n-gram needs them as prefix or suffix;
    unigrams are never pruned, and the pruned mass goes to the context's backoff so every
    distribution still sums to one.
    """
    if order < 1:
        raise ConfigError(f"LM order must be >= 1, got {order}")
    thresholds = prune_thresholds(prune, order)
    counts: Counter = Counter()
    sent_tokens: list[list[str]] = []
    for s in sentences:
        toks = [t for t in s if t not in _SPECIAL]
        sent_tokens.append(toks)
        counts.update(toks)
    if not counts:
        raise DataError("the text has no tokens: cannot estimate a language model")
    words = sorted(counts, key=lambda w: (-counts[w], w))
    vocab = [UNK, BOS, EOS] + words
    index = {w: i for i, w in enumerate(vocab)}
    unk_id, bos_id, eos_id = 0, 1, 2
    V = len(vocab)
    # the corpus: <s> w1 .. wm </s> per sentence, with each token's position in its sentence
    lengths = np.fromiter((len(t) + 2 for t in sent_tokens), np.int64, len(sent_tokens))
    tok = np.empty(int(lengths.sum()), np.int64)
    i = 0
    for toks in sent_tokens:
        tok[i] = bos_id
        tok[i + 1: i + 1 + len(toks)] = [index[w] for w in toks]
        tok[i + 1 + len(toks)] = eos_id
        i += len(toks) + 2
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    pos = np.arange(tok.size) - starts
    del sent_tokens

    notes: list[str] = []
    orders: list[_Order] = []
    ids = tok.copy()            # index of the n-gram ending at each position (order 1: the token)
    o1 = _Order(keys=np.arange(V, dtype=np.int64), prefix=np.zeros(V, np.int64),
                last=np.arange(V, dtype=np.int64), suffix=np.zeros(V, np.int64),
                first=np.arange(V, dtype=np.int64), count=np.bincount(tok, minlength=V).astype(np.int64))
    orders.append(o1)
    steps = range(2, order + 1)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="counting n-grams", unit="order", leave=False)
    for n in steps:
        prev = orders[-1]
        valid = np.flatnonzero(pos >= n - 1)
        if valid.size == 0:
            notes.append(f"no sentence is long enough for order {n}")
            empty = np.zeros(0, np.int64)
            orders.append(_Order(empty, empty, empty, empty, empty, empty))
            ids = np.full_like(ids, -1)
            continue
        key = ids[valid - 1] * V + tok[valid]
        uniq, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
        prefix, last = uniq // V, uniq % V
        if n == 2:
            suffix = last.copy()
        else:
            skey = prev.suffix[prefix] * V + last
            suffix = np.searchsorted(prev.keys, skey)
            if suffix.size and not np.array_equal(prev.keys[np.minimum(suffix, len(prev.keys) - 1)], skey):
                raise AssertionError("n-gram suffix missing from the lower order")
        new_ids = np.full_like(ids, -1)
        new_ids[valid] = inv
        ids = new_ids
        orders.append(_Order(keys=uniq, prefix=prefix, last=last, suffix=suffix,
                             first=prev.first[prefix], count=cnt.astype(np.int64)))

    # adjusted counts: raw at the top order and for n-grams starting with <s>, else the
    # number of distinct left extensions
    N = len(orders)
    for n in range(N, 0, -1):
        o = orders[n - 1]
        if n == N:
            a = o.count.copy()
        else:
            a = np.bincount(orders[n].suffix, minlength=len(o.keys)).astype(np.int64)
            a = np.where(o.first == bos_id, o.count, a)
        if n == 1:
            a[[unk_id, bos_id]] = 0
        o.adjusted = a

    # pruning, top down, on raw counts as lmplz does: a kept n-gram keeps its prefix and suffix
    for n in range(N, 0, -1):
        o = orders[n - 1]
        keep = o.count > thresholds[n - 1] if n > 1 else np.ones(len(o.keys), bool)
        if n < N:
            up = orders[n]
            keep[up.prefix[up.keep]] = True
            keep[up.suffix[up.keep]] = True
        o.keep = keep

    # probabilities and backoffs, bottom up
    discounts: list[tuple[float, float, float]] = []
    for n in range(1, N + 1):
        o = orders[n - 1]
        a = o.adjusted.astype(np.float64)
        mask = a > 0
        d = _discounts(o.adjusted[mask], n, notes) if mask.any() else _FALLBACK_DISCOUNTS
        discounts.append(d)
        dv = np.zeros_like(a)
        for k, dk in zip((1, 2, 3), d):
            dv[o.adjusted == k] = dk
        dv[o.adjusted >= 3] = d[2]
        ctx = o.prefix if n > 1 else np.zeros(len(a), np.int64)
        n_ctx = len(orders[n - 2].keys) if n > 1 else 1
        total = np.bincount(ctx, weights=a, minlength=n_ctx)
        mass = np.bincount(ctx, weights=np.where(o.keep, dv, a), minlength=n_ctx)
        with np.errstate(divide="ignore", invalid="ignore"):
            gamma = np.where(total > 0, mass / total, 1.0)
            u = np.where(o.keep & mask, (a - dv) / total[ctx], 0.0)
        if n == 1:
            p = u + gamma[0] / (V - 1)           # uniform over the vocabulary without <s>
            p[bos_id] = 0.0
        else:
            lower = orders[n - 2]
            p = u + gamma[o.prefix] * np.power(10.0, lower.logp[o.suffix])
        with np.errstate(divide="ignore"):
            o.logp = np.where(p > 0, np.log10(np.maximum(p, 1e-300)), -99.0)
        if n > 1:
            lower = orders[n - 2]
            lower.backoff = gamma
            has = np.zeros(len(lower.keys), bool)
            has[o.prefix[o.keep]] = True
            lower.has_ext = has
    orders[-1].backoff = np.ones(len(orders[-1].keys))
    orders[-1].has_ext = np.zeros(len(orders[-1].keys), bool)
    return NgramCounts(vocab=vocab, orders=orders, discounts=discounts, notes=notes)


def prune_thresholds(prune: Sequence[int], order: int) -> list[int]:
    """Per-order count thresholds from ``prune`` (the last value repeats; unigrams are never pruned)."""
    p = [int(x) for x in (prune or (0,))]
    if any(x < 0 for x in p):
        raise ConfigError(f"prune thresholds must be >= 0, got {p}")
    if p[0] != 0:
        raise ConfigError(f"unigrams cannot be pruned: the first prune threshold must be 0, got {p}")
    if any(b < a for a, b in zip(p, p[1:])):
        raise ConfigError(f"prune thresholds must be non-decreasing, got {p}")
    if len(p) > order:
        raise ConfigError(f"{len(p)} prune thresholds for an order-{order} model")
    return p + [p[-1]] * (order - len(p))


def _ngram_strings(model: NgramCounts) -> list[np.ndarray]:
    voc = np.array(model.vocab, dtype=object)
    out = [voc.copy()]
    for o in model.orders[1:]:
        out.append(out[-1][o.prefix] + " " + voc[o.last])
    return out


def write_arpa(model: NgramCounts, path: str | os.PathLike) -> None:
    """Write ``model`` as an ARPA file (gzip'd when the name ends in ``.gz``), atomically."""
    path = Path(path)
    strings = _ngram_strings(model)
    buf = io.StringIO()
    buf.write("\\data\\\n")
    sizes = model.sizes()
    for n, size in enumerate(sizes, 1):
        buf.write(f"ngram {n}={size}\n")
    top = model.order
    for n, (o, s) in enumerate(zip(model.orders, strings), 1):
        buf.write(f"\n\\{n}-grams:\n")
        keep = np.flatnonzero(o.keep)
        lp = o.logp[keep]
        names = s[keep]
        if n < top:
            bo = np.where(o.has_ext[keep], np.log10(np.maximum(o.backoff[keep], 1e-300)), 0.0)
            buf.writelines(f"{p:.6f}\t{w}\t{b:.6f}\n" if b != 0.0 else f"{p:.6f}\t{w}\n"
                           for p, w, b in zip(lp.tolist(), names.tolist(), bo.tolist()))
        else:
            buf.writelines(f"{p:.6f}\t{w}\n" for p, w in zip(lp.tolist(), names.tolist()))
    buf.write("\n\\end\\\n")
    data = buf.getvalue().encode("utf-8")
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=9, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
