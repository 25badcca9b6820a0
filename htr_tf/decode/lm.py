"""N-gram language models for decoding: build (KenLM's ``lmplz`` or our own estimator), load, check.

Two kinds, tokenised exactly as the decoders produce tokens:

* ``word``: a line's tokens are its space-separated words as the recogniser writes them
  (punctuation stays attached: ``said.`` is one word), after :meth:`Charset.normalize`;
* ``char``: a line's tokens are its characters, with the space written as the word-boundary
  token (:func:`boundary_token`, ``|`` unless the charset has ``|``) and a boundary after
  the last word too, because the decoders end every line with one separator frame.  A
  token spelled differently from the decoder's token strings silently becomes ``<unk>``
  in KenLM, which is why :func:`tokenize` is the one definition both sides use.

An LM file ``NAME.arpa``, ``NAME.arpa.gz`` or ``NAME.bin`` has sidecars written by
:func:`build_lm`: ``NAME.lexicon.tsv.gz`` (every word of the text with its count, most
frequent first) and ``NAME.meta.json`` (kind, order, boundary token, charset, estimator,
counts); ``NAME.hnsw`` is the lexicon search index (:mod:`htr_tf.decode.lexicon`).

Estimation uses ``lmplz`` when it is on ``PATH`` (with ``-S 200M``), otherwise
:func:`estimate_kneser_ney`: interpolated modified Kneser-Ney (Chen & Goodman 1998) as
lmplz computes it -- adjusted (continuation) counts for lower orders, discounts D1, D2,
D3+ per order from the count-of-counts, backoff weights that make every context's
distribution sum to one, unigrams interpolated with the uniform distribution, and
count pruning whose removed mass goes to the backoff.  The result is an ARPA file that
KenLM loads.

>>> from htr_tf.charset import Charset
>>> tokenize("Hi, you", "char", Charset())
['H', 'i', ',', '|', 'y', 'o', 'u', '|']
>>> tokenize("Hi, you", "word", Charset())
['Hi,', 'you']
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Sequence

import numpy as np

from htr_tf.charset import DEFAULT_CHARSET, Charset
from htr_tf.errors import ConfigError, DataError, ModelError
from htr_tf.fileio import atomic_path, atomic_write_text

__all__ = [
    "LMKind", "BOS", "EOS", "UNK", "BUNDLED_LM_DIR", "BUNDLED_WORD_LM", "HELDOUT_EVERY",
    "boundary_token", "tokenize", "read_text", "split_heldout", "NgramCounts",
    "estimate_kneser_ney", "write_arpa", "build_lm", "find_kenlm_tools", "lm_sidecars",
    "read_meta", "read_lexicon", "write_lexicon", "check_lm_file", "load_kenlm",
    "check_charset", "arpa_vocabulary", "DEFAULT_GRIDS", "grid_search", "tune_decoder",
]

LMKind = Literal["word", "char"]
BOS, EOS, UNK = "<s>", "</s>", "<unk>"
_SPECIAL = (BOS, EOS, UNK)
META_FORMAT_VERSION = 1

BUNDLED_LM_DIR = Path(__file__).resolve().parents[1] / "assets" / "lm"
#: The default word LM (built by training/lm.md's recipe from the bundled Brown extract).
BUNDLED_WORD_LM = BUNDLED_LM_DIR / "brown-word4.arpa.gz"
#: The bundled LM leaves out every ``HELDOUT_EVERY``-th sentence (index % 20 == 19) of the
#: bundled text, so benchmarks and tests can decode text the LM has never seen.
HELDOUT_EVERY = 20

_LM_SUFFIXES = (".arpa.gz", ".arpa", ".binary", ".bin", ".klm")
_ARPA_GZ_MAGIC = b"\x1f\x8b"
_KENLM_BINARY_MAGIC = b"mmap lm "


# -- tokenisation ------------------------------------------------------------------------------
def boundary_token(charset: Charset) -> str:
    """The char LM's word-boundary token: ``|``, or ``<space>`` when ``|`` is a charset character."""
    return "|" if "|" not in charset else "<space>"


def tokenize(text: str, kind: LMKind, charset: Charset = DEFAULT_CHARSET,
             boundary: str | None = None) -> list[str]:
    """LM tokens of one normalised line (see the module docstring for the two kinds)."""
    words = charset.normalize(text).split()
    if kind == "word":
        return words
    if kind != "char":
        raise ValueError(f"LM kind must be 'word' or 'char', got {kind!r}")
    b = boundary or boundary_token(charset)
    out: list[str] = []
    for w in words:
        out.extend(w)
        out.append(b)
    return out


def _check_kind(kind: str) -> None:
    if kind not in ("word", "char"):
        raise ConfigError(f"LM kind must be 'word' or 'char', got {kind!r}")


# -- reading text ----------------------------------------------------------------------------
@dataclass
class TextStats:
    """What reading the text did: lines kept, lines skipped and characters dropped (counted)."""

    lines: int = 0
    skipped_lines: int = 0
    dropped_chars: Counter = field(default_factory=Counter)
    skipped_chars: Counter = field(default_factory=Counter)
    special_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"lines": self.lines, "skipped_lines": self.skipped_lines,
                "dropped_chars": dict(self.dropped_chars.most_common()),
                "chars_in_skipped_lines": dict(self.skipped_chars.most_common()),
                "special_tokens_removed": self.special_tokens}


def _raw_lines(path: Path) -> Iterator[str]:
    if not path.exists():
        raise DataError(f"{path}: no such text file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a .txt, .txt.gz or brown.zip")
    if path.suffix == ".zip":
        from htr_tf.data.text import brown_sentences

        yield from brown_sentences(path)
        return
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
            for line in f:
                yield line
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text: {e}") from None
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read: {e}") from None


def read_text(sources: Sequence[str | os.PathLike] | None, charset: Charset = DEFAULT_CHARSET,
              unknown: Literal["skip", "drop", "error"] = "skip",
              stats: TextStats | None = None) -> Iterator[str]:
    """Normalised lines of ``sources`` (``.txt``, ``.txt.gz``, nltk ``brown.zip``; ``None``: the bundled text).

    A line with characters outside ``charset`` is skipped (``unknown="skip"``), loses them
    (``"drop"``) or raises :class:`DataError` (``"error"``); ``stats`` counts what happened.
    The tokens ``<s>``, ``</s>`` and ``<unk>`` are removed from the text (they are the LM's own).
    """
    stats = stats if stats is not None else TextStats()
    if unknown not in ("skip", "drop", "error"):
        raise ConfigError(f"unknown-character policy must be skip, drop or error, got {unknown!r}")
    if sources is None:
        from htr_tf.data.text import load_sentences

        streams: list[tuple[str, Iterable[str]]] = [("<bundled text>", load_sentences(charset=charset))]
    else:
        if not sources:
            raise DataError("no text files given")
        streams = [(str(p), _raw_lines(Path(p))) for p in sources]
    for name, lines in streams:
        for lineno, raw in enumerate(lines, 1):
            line = _clean_line(raw, charset, unknown, stats, f"{name}:{lineno}")
            if line:
                yield line


def _clean_line(raw: str, charset: Charset, unknown: str, stats: TextStats, where: str) -> str:
    """One normalised line under the unknown-character policy ('' when nothing is left)."""
    line = charset.normalize(raw)
    if not line:
        return ""
    bad = [c for c in line if c not in charset]
    if bad:
        if unknown == "error":
            raise DataError(f"{where}: character {bad[0]!r} (U+{ord(bad[0]):04X}) is not in the charset")
        if unknown == "skip":
            stats.skipped_lines += 1
            stats.skipped_chars.update(bad)
            return ""
        stats.dropped_chars.update(bad)
        line = " ".join("".join(c for c in line if c in charset).split())
    words = line.split()
    if any(w in _SPECIAL for w in words):
        stats.special_tokens += sum(w in _SPECIAL for w in words)
        line = " ".join(w for w in words if w not in _SPECIAL)
    if line:
        stats.lines += 1
    return line


def split_heldout(lines: Sequence[str], every: int = HELDOUT_EVERY) -> tuple[list[str], list[str]]:
    """``(kept, held_out)``: every ``every``-th line (index % every == every - 1) is held out.

    >>> split_heldout(list("abcdef"), 3)
    (['a', 'b', 'd', 'e'], ['c', 'f'])
    """
    if every <= 0:
        return list(lines), []
    kept = [s for i, s in enumerate(lines) if i % every != every - 1]
    held = [s for i, s in enumerate(lines) if i % every == every - 1]
    return kept, held


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
    if not all(0.0 < x < k for k, x in zip((1, 2, 3), d)) or not all(math.isfinite(x) for x in d):
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
    thresholds = _prune_thresholds(prune, order)
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


def _prune_thresholds(prune: Sequence[int], order: int) -> list[int]:
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


# -- lmplz / build_binary ------------------------------------------------------------------------
def find_kenlm_tools() -> dict[str, str]:
    """Paths of KenLM's ``lmplz`` and ``build_binary`` found on ``PATH`` (absent ones left out)."""
    return {name: p for name in ("lmplz", "build_binary") if (p := shutil.which(name))}


def _run_lmplz(lmplz: str, token_lines: Iterable[str], order: int, prune: Sequence[int],
               out_arpa: Path, memory: str, tmpdir: Path) -> str:
    cmd = [lmplz, "-o", str(order), "-S", memory, "-T", str(tmpdir), "--discount_fallback",
           "--skip_symbols"]
    if any(prune):
        cmd += ["--prune", *[str(x) for x in prune]]
    text = tmpdir / "text.txt"
    with open(text, "w", encoding="utf-8") as f:
        for line in token_lines:
            f.write(line + "\n")
    with open(text, "rb") as fin, open(out_arpa, "wb") as fout:
        r = subprocess.run(cmd, stdin=fin, stdout=fout, stderr=subprocess.PIPE)
    if r.returncode != 0:
        err = r.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DataError(f"lmplz failed ({' '.join(cmd)}): {err[-1] if err else r.returncode}")
    return " ".join(cmd)


def _arpa_to_binary(build_binary: str, arpa: Path, out: Path) -> str:
    cmd = [build_binary, "-s", "trie", str(arpa), str(out)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        err = r.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DataError(f"build_binary failed: {err[-1] if err else r.returncode}")
    return " ".join(cmd)


# -- sidecars ------------------------------------------------------------------------------------
def _lm_stem(path: Path) -> Path:
    name = path.name
    for suf in _LM_SUFFIXES:
        if name.endswith(suf) and len(name) > len(suf):
            return path.with_name(name[: -len(suf)])
    return path


def lm_sidecars(path: str | os.PathLike) -> dict[str, Path]:
    """The files kept beside an LM: ``lexicon`` (.lexicon.tsv.gz), ``meta`` (.meta.json), ``index`` (.hnsw)."""
    stem = _lm_stem(Path(path))
    return {"lexicon": stem.with_name(stem.name + ".lexicon.tsv.gz"),
            "meta": stem.with_name(stem.name + ".meta.json"),
            "index": stem.with_name(stem.name + ".hnsw")}


def write_lexicon(counts: Counter | dict[str, int], path: str | os.PathLike) -> None:
    """``word<TAB>count`` lines, most frequent first (ties alphabetical), written atomically.

    A name ending in ``.gz`` is gzip'd (deterministically: no timestamp).
    """
    if not counts:
        raise DataError(f"{path}: refusing to write an empty lexicon")
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    data = "".join(f"{w}\t{c}\n" for w, c in items).encode("utf-8")
    if str(path).endswith(".gz"):
        data = gzip.compress(data, compresslevel=9, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_lexicon(path: str | os.PathLike) -> dict[str, int]:
    """A lexicon file (``word<TAB>count`` or bare words, count 1; plain or gzip'd) as an ordered dict.

    Raises :class:`DataError` naming the file when it is missing, unreadable or empty.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: lexicon file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a lexicon file")
    try:
        raw = path.read_bytes()
        if raw[:2] == _ARPA_GZ_MAGIC:
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8")
    except (UnicodeDecodeError, OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read lexicon: {e}") from None
    out: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) > 2:
            raise DataError(f"{path}:{lineno}: expected 'word<TAB>count', got {line!r}")
        try:
            c = int(parts[1]) if len(parts) == 2 else 1
        except ValueError:
            raise DataError(f"{path}:{lineno}: count {parts[1]!r} is not an integer") from None
        out[parts[0]] = out.get(parts[0], 0) + c
    if not out:
        raise DataError(f"{path}: the lexicon is empty")
    return out


def read_meta(path: str | os.PathLike) -> dict[str, Any] | None:
    """The LM's ``.meta.json`` sidecar, or ``None`` when it has none (a foreign LM)."""
    meta_path = lm_sidecars(path)["meta"]
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{meta_path}: corrupt LM metadata: {e}") from None
    if not isinstance(meta, dict) or meta.get("kind") not in ("word", "char"):
        raise ModelError(f"{meta_path}: not htr-tf LM metadata (no kind 'word' or 'char')")
    return meta


# -- building ----------------------------------------------------------------------------------
def build_lm(out: str | os.PathLike, order: int, kind: LMKind = "word",
             text: Sequence[str | os.PathLike] | None = None, lines: Iterable[str] | None = None,
             charset: Charset = DEFAULT_CHARSET, prune: Sequence[int] = (0,),
             unknown: Literal["skip", "drop", "error"] = "skip", heldout_every: int = 0,
             estimator: Literal["auto", "lmplz", "python"] = "auto", memory: str = "200M",
             lexicon: bool = True, progress: bool = False) -> dict[str, Any]:
    """Build an ``order``-gram LM of ``kind`` into ``out`` (``.arpa``, ``.arpa.gz`` or ``.bin``).

    The text is ``lines`` when given, else the files ``text`` (else the bundled Brown
    extract); ``heldout_every`` leaves every k-th line out (:func:`split_heldout`).
    ``estimator="auto"`` uses ``lmplz`` when on ``PATH``, else :func:`estimate_kneser_ney`;
    a ``.bin`` output needs ``build_binary``.  Writes the metadata sidecar and (unless
    ``lexicon=False``) the lexicon sidecar, and returns the metadata.
    """
    _check_kind(kind)
    out = Path(out)
    if not any(out.name.endswith(s) for s in _LM_SUFFIXES):
        raise ConfigError(f"{out}: the LM file name must end in one of {', '.join(_LM_SUFFIXES)}")
    binary = not (out.name.endswith(".arpa") or out.name.endswith(".arpa.gz"))
    tools = find_kenlm_tools()
    if estimator == "lmplz" and "lmplz" not in tools:
        raise ConfigError("estimator 'lmplz' requested but lmplz is not on PATH (see training/lm.md)")
    if estimator not in ("auto", "lmplz", "python"):
        raise ConfigError(f"estimator must be auto, lmplz or python, got {estimator!r}")
    if binary and "build_binary" not in tools:
        raise ConfigError(f"{out}: a binary KenLM file needs build_binary on PATH; write .arpa or .arpa.gz instead")
    if unknown not in ("skip", "drop", "error"):
        raise ConfigError(f"unknown-character policy must be skip, drop or error, got {unknown!r}")
    thresholds = _prune_thresholds(prune, order)
    t0 = time.perf_counter()
    stats = TextStats()
    if lines is not None:
        all_lines = [ln for i, raw in enumerate(lines, 1)
                     if (ln := _clean_line(raw, charset, unknown, stats, f"line {i}"))]
    else:
        all_lines = list(read_text(text, charset, unknown, stats))
    all_lines, held = split_heldout(all_lines, heldout_every)
    if not all_lines:
        raise DataError("no usable text lines for the language model")
    boundary = boundary_token(charset)
    word_counts = Counter(w for ln in all_lines for w in ln.split())
    token_lines = (tokenize(ln, kind, charset, boundary) for ln in all_lines)
    use_lmplz = estimator == "lmplz" or (estimator == "auto" and "lmplz" in tools)
    sidecars = lm_sidecars(out)
    with tempfile.TemporaryDirectory(prefix="htr-lm-", dir=out.parent if out.parent.exists() else None) as td:
        tmp = Path(td)
        arpa = tmp / "lm.arpa"
        if use_lmplz:
            command = _run_lmplz(tools["lmplz"], (" ".join(t) for t in token_lines), order,
                                 thresholds, arpa, memory, tmp)
            sizes = _arpa_sizes(arpa)
            notes: list[str] = []
            discounts = None
            est = "lmplz"
        else:
            model = estimate_kneser_ney(token_lines, order, thresholds, progress=progress)
            write_arpa(model, arpa)
            sizes, notes, discounts, command = model.sizes(), model.notes, model.discounts, None
            est = "htr_tf.decode.lm.estimate_kneser_ney"
        for n in notes:
            warnings.warn(f"{out}: {n}", stacklevel=2)
        out.parent.mkdir(parents=True, exist_ok=True)
        if binary:
            with atomic_path(out) as t:
                command_bin = _arpa_to_binary(tools["build_binary"], arpa, t)
        else:
            command_bin = None
            with atomic_path(out) as t:
                if out.name.endswith(".gz"):
                    with open(arpa, "rb") as fin, gzip.GzipFile(t, "wb", compresslevel=9, mtime=0) as g:
                        shutil.copyfileobj(fin, g, 1 << 20)
                else:
                    shutil.copyfile(arpa, t)
    if lexicon:
        write_lexicon(word_counts, sidecars["lexicon"])
    meta = {
        "format_version": META_FORMAT_VERSION, "kind": kind, "order": order,
        "boundary": boundary if kind == "char" else None,
        "charset": charset.to_dict(), "estimator": est, "estimator_command": command,
        "build_binary_command": command_bin, "prune": thresholds, "ngrams": sizes,
        "discounts": [list(d) for d in discounts] if discounts else None,
        "heldout_every": heldout_every, "heldout_lines": len(held),
        "text": [str(p) for p in text] if text is not None else ("<lines>" if lines is not None else "<bundled>"),
        "lines": len(all_lines), "words": int(sum(word_counts.values())), "vocabulary": len(word_counts),
        "text_stats": stats.to_dict(), "bytes": out.stat().st_size,
        "lexicon": sidecars["lexicon"].name if lexicon else None,
        "seconds": round(time.perf_counter() - t0, 2), "notes": notes,
    }
    atomic_write_text(sidecars["meta"], json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return meta


def _arpa_sizes(path: Path) -> list[int]:
    sizes = []
    with _open_text(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("ngram ") and "=" in line:
                sizes.append(int(line.split("=", 1)[1]))
            elif line.startswith("\\1-grams"):
                break
    return sizes


def _open_text(path: Path):
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == _ARPA_GZ_MAGIC:
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


# -- loading and checking ---------------------------------------------------------------------
def check_lm_file(path: str | os.PathLike) -> str:
    """Cheap checks before KenLM sees the file; returns ``"arpa"``, ``"arpa.gz"`` or ``"binary"``.

    Raises :class:`ModelError` naming the file when it is missing, empty, a directory, or
    neither an ARPA file (plain or gzip'd) nor a KenLM binary.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: language model file not found")
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, expected a KenLM .arpa, .arpa.gz or binary file")
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head:
        raise ModelError(f"{path}: language model file is empty")
    if head.startswith(_KENLM_BINARY_MAGIC):
        return "binary"
    if head.startswith(_ARPA_GZ_MAGIC):
        try:
            with gzip.open(path, "rb") as g:
                head = g.read(4096)
        except (OSError, EOFError) as e:
            raise ModelError(f"{path}: corrupt gzip'd language model: {e}") from None
        kind = "arpa.gz"
    else:
        kind = "arpa"
    if not head.lstrip().startswith(b"\\data\\"):
        raise ModelError(f"{path}: not a language model (neither an ARPA file starting with "
                         f"\\data\\ nor a KenLM binary)")
    return kind


def load_kenlm(path: str | os.PathLike):
    """``kenlm.Model(path)`` with clear errors: ModelError naming the file when missing or corrupt."""
    check_lm_file(path)
    try:
        import kenlm
    except ImportError:
        raise ModelError("the kenlm package is not installed: pip install 'htr-tf[lm]'") from None
    config = kenlm.Config()
    config.show_progress = False
    try:
        return kenlm.Model(str(path), config)
    except (OSError, RuntimeError, ValueError) as e:
        msg = " ".join(str(e).split())
        raise ModelError(f"{path}: corrupt or unreadable language model ({msg[:300]})") from None


def arpa_vocabulary(path: str | os.PathLike) -> list[str]:
    """The unigrams of an ARPA file (plain or gzip'd), in file order."""
    path = Path(path)
    if check_lm_file(path) == "binary":
        raise ModelError(f"{path}: a KenLM binary does not list its vocabulary; keep the "
                         f"lexicon sidecar or use the ARPA file")
    out: list[str] = []
    section = False
    with _open_text(path) as f:
        for line in f:
            s = line.strip()
            if s.startswith("\\1-grams:"):
                section = True
                continue
            if section:
                if not s:
                    continue
                if s.startswith("\\"):
                    break
                parts = s.split()
                if len(parts) >= 2:
                    out.append(parts[1])
    if not out:
        raise ModelError(f"{path}: corrupt ARPA file (no unigrams)")
    return out


def check_charset(path: str | os.PathLike, kind: LMKind, charset: Charset,
                  meta: dict[str, Any] | None = None, model: Any | None = None) -> str:
    """Check that the LM at ``path`` fits a recogniser with ``charset``; returns the boundary token.

    With metadata (an LM built here) the LM's kind must be ``kind`` and its charset must
    have the same characters as ``charset``.  Without it, a char LM must contain the
    boundary token and most of the charset's characters as tokens (``model`` is a loaded
    ``kenlm.Model``).  Mismatches raise :class:`ModelError` naming the file.
    """
    meta = meta if meta is not None else read_meta(path)
    if meta is not None:
        if meta["kind"] != kind:
            other = "beam+charlm" if meta["kind"] == "char" else "beam+lm"
            raise ModelError(f"{path}: is a {meta['kind']} LM, not a {kind} LM (use decoder {other})")
        try:
            lm_cs = Charset.from_dict(meta["charset"])
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{lm_sidecars(path)['meta']}: bad charset in LM metadata: {e}") from None
        missing = "".join(sorted(set(charset.chars) - set(lm_cs.chars)))
        extra = "".join(sorted(set(lm_cs.chars) - set(charset.chars)))
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"the model's characters {missing!r} are not in the LM's charset")
            if extra:
                parts.append(f"the LM's characters {extra!r} are not in the model's charset")
            raise ModelError(f"{path}: charset mismatch between LM and model: {'; '.join(parts)} "
                             f"(rebuild it with `htr lm build --charset MODEL`)")
        boundary = meta.get("boundary") or boundary_token(charset)
        if kind == "char" and boundary in charset:
            raise ModelError(f"{path}: the LM's word-boundary token {boundary!r} is a character of the model")
        return boundary
    boundary = boundary_token(charset)
    if kind == "char":
        if model is None:
            model = load_kenlm(path)
        if boundary not in model:
            raise ModelError(f"{path}: charset mismatch between LM and model: the char LM has no "
                             f"word-boundary token {boundary!r} (tokens must be single characters "
                             f"with {boundary!r} for the space)")
        chars = [c for c in charset.chars if c != " "]
        absent = [c for c in chars if c not in model]
        if len(absent) > len(chars) // 2:
            raise ModelError(f"{path}: charset mismatch between LM and model: {len(absent)} of the "
                             f"model's {len(chars)} characters are not LM tokens "
                             f"(e.g. {''.join(absent[:10])!r})")
    return boundary


# -- tuning the decoding weights -----------------------------------------------------------------
#: Default grids of ``htr lm tune`` per decoder (beam width fixed at 50 unless given).
DEFAULT_GRIDS: dict[str, dict[str, list]] = {
    "beam+lm": {"lm_weight": [0.5, 1.0, 1.5, 2.0, 3.0], "word_score": [-1.0, 0.0, 1.0, 2.0]},
    "beam+lm+lexicon": {"lm_weight": [0.5, 1.0, 1.5, 2.0, 3.0], "word_score": [-1.0, 0.0, 1.0, 2.0]},
    "beam+charlm": {"lm_weight": [0.5, 1.0, 1.5, 2.0, 3.0], "sil_score": [-1.0, 0.0, 1.0]},
}


def grid_search(log_probs: np.ndarray, lengths: np.ndarray, refs: Sequence[str], charset: Charset,
                decoder: str = "beam+lm", grid: dict[str, Sequence[Any]] | None = None,
                fixed: dict[str, Any] | None = None, metric: str = "cer",
                progress: bool = False, table: Any = None) -> dict[str, Any]:
    """Decode ``log_probs`` with every combination of ``grid`` and score against ``refs``.

    Returns ``{"decoder", "metric", "results": [{options, cer, wer, lines_per_second}], "best"}``
    where ``best`` holds the winning options with their CER/WER (ties: the faster setting).
    ``table`` (a file) gets one aligned row per setting as they finish.
    """
    import itertools

    from htr_tf.decode import get_decoder
    from htr_tf.evaluate import score_lines

    if metric not in ("cer", "wer"):
        raise ConfigError(f"metric must be cer or wer, got {metric!r}")
    grid = dict(grid) if grid else {}
    for k, v in DEFAULT_GRIDS.get(decoder, {}).items():
        grid.setdefault(k, v)
    fixed = dict(fixed or {})
    if "beam_width" not in grid:
        fixed.setdefault("beam_width", 50)
    names = sorted(grid)
    combos = list(itertools.product(*(grid[n] for n in names)))
    if not combos:
        raise ConfigError("empty tuning grid")
    if table is not None:
        print(" ".join(f"{n:>12s}" for n in names) + f" {'CER %':>7s} {'WER %':>7s} {'lines/s':>8s}",
              file=table, flush=True)
    it: Iterable = combos
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(combos, desc=f"tuning {decoder}", unit="setting", leave=False)
    results = []
    for values in it:
        opts = {**fixed, **dict(zip(names, values))}
        dec = get_decoder(decoder, **opts)
        t0 = time.perf_counter()
        try:
            hyps = [line.text for line in dec.decode(log_probs, lengths, charset)]
        finally:
            close = getattr(dec, "close", None)
            if close is not None:
                close()
        dt = time.perf_counter() - t0
        s = score_lines(list(refs), hyps)
        row = {"options": dict(zip(names, values)), "cer": s["cer"], "wer": s["wer"],
               "lines_per_second": round(len(hyps) / dt, 2) if dt > 0 else None}
        results.append(row)
        if table is not None:
            print(" ".join(f"{v!s:>12s}" for v in values)
                  + f" {100 * s['cer']:7.2f} {100 * s['wer']:7.2f} {row['lines_per_second'] or 0:8.1f}",
                  file=table, flush=True)
    best = min(results, key=lambda r: (r[metric], r["wer" if metric == "cer" else "cer"],
                                       -(r["lines_per_second"] or 0)))
    return {"decoder": decoder, "metric": metric, "fixed": fixed, "grid": {n: list(grid[n]) for n in names},
            "lines": len(refs), "results": results,
            "best": {"decoder": decoder, **fixed, **best["options"], "cer": best["cer"], "wer": best["wer"]}}


def tune_decoder(model: str | os.PathLike, data: str | os.PathLike, split: str = "validation",
                 decoder: str = "beam+lm", grid: dict[str, Sequence[Any]] | None = None,
                 fixed: dict[str, Any] | None = None, limit: int | None = None, batch_size: int = 32,
                 metric: str = "cer", progress: bool = False, table: Any = None) -> dict[str, Any]:
    """Tune LM decoding of a recognizer bundle on a record set's ``split`` (see :func:`grid_search`).

    The recogniser runs once; its log-probabilities (padded to the longest line) are then
    decoded with every setting.
    """
    from htr_tf.data.records import RecordSet
    from htr_tf.evaluate import width_buckets
    from htr_tf.fileio import decode_image
    from htr_tf.geometry import batch_lines
    from htr_tf.models.recognizer import Recognizer

    rec = Recognizer.load(model)
    rs = RecordSet(data)
    if split not in rs.splits("lines"):
        raise DataError(f"{data}: no line split {split!r}; it has {rs.splits('lines')}")
    crops, refs = [], []
    for ex in rs.iter_lines(split):
        if limit is not None and len(refs) >= limit:
            break
        crops.append(decode_image(ex["image"], f"{data}:{split}:{ex['id']}"))
        refs.append(rec.charset.normalize(ex["text"]))
    if not refs:
        raise DataError(f"{data}: split {split!r} has no lines")
    g = rec.geometry
    lps: list[np.ndarray] = [None] * len(crops)  # type: ignore[list-item]
    for idx in width_buckets([g.target_width(*c.shape[:2]) for c in crops], batch_size):
        images, widths = batch_lines([crops[i] for i in idx], g)
        lp, ln = rec.log_probs(images, widths)
        for j, i in enumerate(idx):
            lps[i] = lp[j, : int(ln[j])]
    T = max(x.shape[0] for x in lps)
    C = rec.charset.num_classes
    log_probs = np.zeros((len(lps), T, C), np.float32)
    lengths = np.array([x.shape[0] for x in lps], np.int64)
    for i, x in enumerate(lps):
        log_probs[i, : x.shape[0]] = x
    result = grid_search(log_probs, lengths, refs, rec.charset, decoder, grid, fixed, metric,
                         progress, table)
    result.update(model=str(model), data=str(data), split=split)
    return result


#: Decoder options that name files or processes of this machine, not weights of the model:
#: recorded as provenance by :func:`save_tuned_decoder`, never as tuned values.
LOCAL_OPTIONS = ("lm", "lexicon", "workers")


def save_tuned_decoder(model: str | os.PathLike, result: dict[str, Any]) -> dict[str, Any]:
    """Make the best setting of a :func:`tune_decoder` result the defaults of its decoder for
    ``model`` (a recogniser bundle): written into the bundle's ``htr.json`` under
    ``decoding`` (see :func:`htr_tf.decode.decoder_defaults`); returns the entry written.

    The values are the decoder's constructor options that were tuned or fixed, without
    :data:`LOCAL_OPTIONS`; ``tuned`` records the data, split, line count, metric, the CER and
    WER reached, the LM and lexicon used (null: the decoder's default) and the grid.
    """
    import datetime as _dt

    from htr_tf.models.recognizer import Recognizer

    decoder, best, fixed = result["decoder"], result["best"], result.get("fixed", {})
    options = {k: v for k, v in best.items()
               if k in set(result.get("grid", {})) | set(fixed) and k not in LOCAL_OPTIONS}
    def where(p: Any) -> str | None:
        return str(Path(p).resolve()) if p else None

    tuned = {"data": where(result.get("data")), "split": result.get("split"), "lines": result.get("lines"),
             "metric": result.get("metric"), "cer": best.get("cer"), "wer": best.get("wer"),
             "lm": where(fixed.get("lm")), "lexicon": where(fixed.get("lexicon")), "grid": result.get("grid"),
             "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    meta = Recognizer.save_decoder_settings(model, decoder, options, tuned)
    return meta["decoding"][decoder]
