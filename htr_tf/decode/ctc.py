"""CTC decoders: post-processing of the recogniser's log-probabilities, chosen by name.

Every decoder takes ``log_probs [B, T, C]`` (log-softmax, blank = :data:`BLANK_INDEX`),
the valid frame counts ``lengths [B]`` and the :class:`~htr_tf.charset.Charset`, and
returns one :class:`DecodedLine` per line.  A decoded line keeps, for every character,
the frames it was read from and a confidence, so boxes and confidences reach the output
(as kraken's greedy decoder does).

Confidences (the same definition for every decoder, and in the served graph):

* a character's confidence is the **largest** probability that character has over the
  frames aligned to it (its run in the best path; for beam search, in the Viterbi
  alignment of the chosen labelling);
* a line's confidence is the **mean** of its characters' confidences; a line decoded as
  empty gets the mean over its frames of the top probability (how sure the model is that
  it is blank), and a line with no frames gets 0.

Decoders are looked up in an explicit registry::

    >>> get_decoder("greedy").name
    'greedy'
    >>> sorted(available_decoders())
    ['beam', 'beam+charlm', 'beam+lm', 'beam+lm+lexicon', 'greedy', 'lexicon']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from htr_tf.bundle import DECODING_KEY
from htr_tf.charset import BLANK_INDEX, Charset
from htr_tf.errors import ConfigError, ModelError

__all__ = [
    "DecodedLine", "Decoder", "GreedyDecoder", "BeamSearchDecoder", "available_decoders",
    "get_decoder", "register_decoder", "forced_align", "forced_align_batch", "tf_greedy_decode", "check_inputs",
    "DECODING_KEY", "decoder_defaults", "decoder_option_names", "build_decoder", "parse_decoder_options", "option_value",
    "BEST_DECODER", "lm_extra_installed", "default_decoder",
]

_NEG_INF = -np.inf


@dataclass(frozen=True)
class DecodedLine:
    """One decoded line.

    ``ids`` are charset ids (1-based), ``spans[i] = (start, end)`` the frames of character
    ``i`` (``end`` exclusive), ``char_confidences[i]`` its probability in ``[0, 1]``;
    ``score`` is a natural-log score of the result: the best path's log-probability for
    greedy decoding, the labelling's (beam-estimated) log-probability for beam search.
    """

    text: str
    ids: tuple[int, ...] = ()
    confidence: float = 0.0
    char_confidences: tuple[float, ...] = ()
    spans: tuple[tuple[int, int], ...] = ()
    score: float = 0.0
    num_frames: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "confidence": self.confidence,
                "char_confidences": list(self.char_confidences),
                "spans": [list(s) for s in self.spans], "score": self.score,
                "num_frames": self.num_frames}


class Decoder(Protocol):
    """What every decoder provides."""

    name: str

    def decode(self, log_probs: np.ndarray, lengths: np.ndarray, charset: Charset) -> list[DecodedLine]:
        ...

    def options(self) -> dict[str, Any]:
        ...


# -- input checks ------------------------------------------------------------------------------
def check_inputs(log_probs: np.ndarray, lengths: np.ndarray | Sequence[int],
                 charset: Charset) -> tuple[np.ndarray, np.ndarray]:
    """Validate decoder inputs; returns ``float32 [B, T, C]`` and ``int64 [B]`` clipped to ``T``."""
    lp = np.asarray(log_probs)
    if lp.ndim != 3:
        raise ValueError(f"log_probs must be [batch, frames, classes], got shape {lp.shape}")
    if not np.issubdtype(lp.dtype, np.floating):
        raise ValueError(f"log_probs must be floating point, got {lp.dtype}")
    if lp.shape[2] != charset.num_classes:
        raise ModelError(f"the model has {lp.shape[2]} output classes but the charset has "
                         f"{charset.num_classes} (including blank): model and charset do not match")
    ln = np.asarray(lengths).reshape(-1)
    if ln.shape[0] != lp.shape[0]:
        raise ValueError(f"lengths has {ln.shape[0]} entries for a batch of {lp.shape[0]}")
    if ln.size and ln.min() < 0:
        raise ValueError("lengths must be >= 0")
    return lp.astype(np.float32, copy=False), np.minimum(ln.astype(np.int64), lp.shape[1])


def _char_table(charset: Charset) -> np.ndarray:
    """Object array mapping ids to characters; id 0 (blank) maps to ''."""
    return np.array([""] + list(charset.chars), dtype=object)


def _empty_confidence(maxp_row: np.ndarray) -> float:
    return float(maxp_row.mean()) if maxp_row.size else 0.0


# -- greedy ------------------------------------------------------------------------------------
class GreedyDecoder:
    """Best path decoding: argmax per frame, merge repeats, drop blanks (vectorised numpy).

    >>> cs = Charset("ab", replacement="")
    >>> lp = np.log(np.array([[[.1, .8, .1], [.1, .8, .1], [.9, .05, .05], [.1, .8, .1]]]))
    >>> line = GreedyDecoder().decode(lp, [4], cs)[0]
    >>> line.text, line.spans
    ('aa', ((0, 2), (3, 4)))
    """

    name = "greedy"

    def options(self) -> dict[str, Any]:
        return {}

    def decode(self, log_probs: np.ndarray, lengths: np.ndarray | Sequence[int],
               charset: Charset) -> list[DecodedLine]:
        lp, ln = check_inputs(log_probs, lengths, charset)
        B, T, _ = lp.shape
        if B == 0:
            return []
        if T == 0:
            return [DecodedLine("", num_frames=0) for _ in range(B)]
        best = lp.argmax(-1).astype(np.int64)                        # [B, T]
        top = np.take_along_axis(lp, best[..., None], -1)[..., 0]    # [B, T] log p of argmax
        valid = np.arange(T)[None, :] < ln[:, None]
        best[~valid] = -1                                            # padding frames: own runs
        prev = np.empty_like(best)
        prev[:, 0] = -2                                              # every row starts a run
        prev[:, 1:] = best[:, :-1]
        starts = np.flatnonzero(best != prev)                        # run starts, flattened
        labels = best.reshape(-1)[starts]
        ends = np.append(starts[1:], B * T)                          # runs never cross rows
        maxp = np.exp(top.reshape(-1))
        run_conf = np.maximum.reduceat(maxp, starts)
        is_char = labels > 0
        c_start, c_end, c_lab, c_conf = starts[is_char], ends[is_char], labels[is_char], run_conf[is_char]
        row = c_start // T
        # per-row slices of the character arrays
        bounds = np.searchsorted(row, np.arange(B + 1))
        path_score = np.where(valid, top, 0.0).sum(1)
        table = _char_table(charset)
        chars = table[c_lab]
        t0, t1 = (c_start - row * T).tolist(), (c_end - row * T).tolist()
        labs, confs = c_lab.tolist(), c_conf.tolist()
        out = []
        for b in range(B):
            i, j = bounds[b], bounds[b + 1]
            if i == j:
                n = int(ln[b])
                conf = _empty_confidence(maxp[b * T: b * T + n])
                out.append(DecodedLine("", (), conf, (), (), float(path_score[b]), n))
                continue
            cc = tuple(confs[i:j])
            out.append(DecodedLine("".join(chars[i:j]), tuple(labs[i:j]), float(sum(cc) / len(cc)), cc,
                                   tuple(zip(t0[i:j], t1[i:j])), float(path_score[b]), int(ln[b])))
        return out


# -- forced alignment ------------------------------------------------------------------------------
def forced_align(log_probs: np.ndarray, ids: Sequence[int]) -> tuple[list[tuple[int, int]], float]:
    """Viterbi alignment of a labelling to ``log_probs [T, C]`` (CTC topology).

    Returns each character's ``(start, end)`` frames (``end`` exclusive) and the best path's
    log-probability; raises ``ValueError`` when the labelling cannot fit in ``T`` frames.
    """
    lp = np.asarray(log_probs)
    (spans, score), = forced_align_batch(lp[None], [lp.shape[0]], [list(ids)])
    if not np.isfinite(score):
        raise ValueError(f"a labelling of {len(ids)} characters does not fit in {lp.shape[0]} frames")
    return spans, score


def forced_align_batch(log_probs: np.ndarray, lengths: Sequence[int] | np.ndarray,
                       labels: Sequence[Sequence[int]]) -> list[tuple[list[tuple[int, int]], float]]:
    """:func:`forced_align` for a batch ``[B, T, C]``, vectorised over lines.

    A labelling that cannot fit its frames gets score ``-inf`` and no spans.
    """
    lp = np.asarray(log_probs, np.float64)
    B, T, _ = lp.shape
    ln = np.minimum(np.asarray(lengths, np.int64).reshape(-1), T)
    L = np.array([len(x) for x in labels], np.int64)
    Lmax = int(L.max()) if B else 0
    S = 2 * Lmax + 1
    ext = np.zeros((B, S), np.int64)                    # blank, c1, blank, c2, ..., blank
    for b, x in enumerate(labels):
        ext[b, 1: 2 * len(x): 2] = x
    # a character state may skip the blank before it unless it repeats the previous character
    skip = np.zeros((B, S), bool)
    skip[:, 3::2] = ext[:, 3::2] != ext[:, 1:-2:2]
    rows = np.arange(B)
    score = np.full((B, S), _NEG_INF)
    if T:
        score[:, :2] = np.take_along_axis(lp[:, 0], ext[:, :2], 1)
    back = np.zeros((T, B, S), np.int8)                 # 0 stay, 1 from s-1, 2 from s-2
    prev1 = np.full((B, S), _NEG_INF)
    prev2 = np.full((B, S), _NEG_INF)
    for t in range(1, int(ln.max()) if B else 0):
        prev1[:, 1:] = score[:, :-1]
        prev2[:, 2:] = score[:, :-2]
        prev2[~skip] = _NEG_INF
        from1 = prev1 > score
        best = np.where(from1, prev1, score)
        from2 = prev2 > best
        active = (t < ln)[:, None]
        back[t] = np.where(active, np.where(from2, 2, from1.astype(np.int8)), 0)
        score = np.where(active, np.where(from2, prev2, best) + np.take_along_axis(lp[:, t], ext, 1), score)
    end = 2 * L
    end_score = score[rows, end]
    alt = np.where(L > 0, score[rows, np.maximum(end - 1, 0)], _NEG_INF)
    state = np.where(alt > end_score, end - 1, end)
    final = np.maximum(alt, end_score)
    final[ln == 0] = np.where(L[ln == 0] == 0, 0.0, _NEG_INF)
    path = np.empty((B, T), np.int64)
    for t in range(T - 1, -1, -1):
        path[:, t] = state
        state = state - back[t, rows, state]
    out: list[tuple[list[tuple[int, int]], float]] = []
    frames = np.arange(T)
    for b in range(B):
        if L[b] == 0 or not np.isfinite(final[b]):
            out.append(([], float(final[b])))
            continue
        p = path[b, : ln[b]]
        odd = (p % 2 == 1)
        k, f = (p[odd] - 1) // 2, frames[: ln[b]][odd]
        starts = np.full(L[b], T)
        ends = np.zeros(L[b], np.int64)
        np.minimum.at(starts, k, f)
        np.maximum.at(ends, k, f + 1)
        out.append((list(zip(starts.tolist(), ends.tolist())), float(final[b])))
    return out


# -- beam search -----------------------------------------------------------------------------------
class BeamSearchDecoder:
    """CTC prefix beam search without a language model.

    ``backend="numpy"`` (default) runs our prefix beam search: per frame, the beams' blank
    and non-blank scores are extended with every character whose probability is at least
    ``min_prob`` (vectorised over lines, beams and characters; prefixes live in a trie).
    ``backend="tf"`` calls ``tf.nn.ctc_beam_search_decoder`` with the blank moved to the
    last class (it ignores ``min_prob``).  With ``min_prob=0`` both find the same
    labellings; on synthetic 128-frame, 80-class posteriors (one thread, shared 2-core CPU)
    the numpy search decoded 157 lines/s at beam 10 and 56 at beam 50, TF 44 and 9.  The
    chosen labelling is then Viterbi-aligned (:func:`forced_align_batch`) to get character
    spans and confidences.
    """

    name = "beam"

    def __init__(self, beam_width: int = 10, min_prob: float = 1e-3, backend: str = "numpy"):
        if int(beam_width) < 1:
            raise ConfigError(f"beam: beam_width must be >= 1, got {beam_width}")
        if not 0.0 <= float(min_prob) < 1.0:
            raise ConfigError(f"beam: min_prob must be in [0, 1), got {min_prob}")
        if backend not in ("numpy", "tf"):
            raise ConfigError(f"beam: backend must be 'numpy' or 'tf', got {backend!r}")
        self.beam_width = int(beam_width)
        self.min_prob = float(min_prob)
        self.backend = backend

    #: lines searched together (bounds the ``[lines, beams, characters]`` work arrays)
    chunk = 64

    def options(self) -> dict[str, Any]:
        return {"beam_width": self.beam_width, "min_prob": self.min_prob, "backend": self.backend}

    def decode(self, log_probs: np.ndarray, lengths: np.ndarray | Sequence[int],
               charset: Charset) -> list[DecodedLine]:
        lp, ln = check_inputs(log_probs, lengths, charset)
        if lp.shape[0] == 0:
            return []
        if self.backend == "tf":
            results = _tf_beam_search(lp, ln, self.beam_width)
        else:
            min_logp = math.log(self.min_prob) if self.min_prob > 0 else _NEG_INF
            results = []
            for i in range(0, lp.shape[0], self.chunk):
                results += _prefix_beam_search(lp[i: i + self.chunk], ln[i: i + self.chunk],
                                               self.beam_width, min_logp)
        aligned = forced_align_batch(lp, ln, [ids for ids, _ in results])
        table = _char_table(charset)
        out = []
        for b, (ids, score) in enumerate(results):
            n = int(ln[b])
            line_lp = lp[b, :n]
            if not ids:
                conf = _empty_confidence(np.exp(line_lp.max(-1))) if n else 0.0
                out.append(DecodedLine("", (), conf, (), (), float(score), n))
                continue
            spans = aligned[b][0]
            cc = tuple(float(np.exp(line_lp[s:e, c].max())) for (s, e), c in zip(spans, ids))
            out.append(DecodedLine("".join(table[list(ids)]), tuple(ids), float(sum(cc) / len(cc)), cc,
                                   tuple(spans), float(score), n))
        return out


_DEAD, _DEAD_PARENT = -3, -4   # node ids of empty beam slots; they match nothing


def _prefix_beam_search(lp: np.ndarray, lengths: np.ndarray, beam_width: int,
                        min_logp: float) -> list[tuple[list[int], float]]:
    """Prefix beam search over a batch ``lp [B, T, C]``; returns (ids, log-probability) per line.

    Beams are nodes of one trie (node ``b`` is line ``b``'s empty prefix).  Per frame, every
    beam can stay (a blank, or a repeat of its last character) or grow by a character whose
    log-probability is at least ``min_logp``; a growth that reproduces a prefix already in
    the beam is merged into it, and the best ``beam_width`` prefixes of each line survive.
    Vectorised over lines, beams and characters; frames past a line's length change nothing.
    """
    B, T, C = lp.shape
    K = beam_width
    parent: list[int] = [-1] * B
    label: list[int] = [0] * B
    children: dict[tuple[int, int], int] = {}
    nodes = np.full((B, K), _DEAD, np.int64)
    nodes[:, 0] = np.arange(B)
    par = np.full((B, K), _DEAD_PARENT, np.int64)
    par[:, 0] = -1
    last = np.zeros((B, K), np.int64)
    pb = np.full((B, K), _NEG_INF)       # log P(prefix, path ends in blank)
    pb[:, 0] = 0.0
    pnb = np.full((B, K), _NEG_INF)      # log P(prefix, path ends in its last character)
    pos = np.full(C, -1, np.int64)
    nonblank = np.arange(1, C)
    idle = np.full(C, _NEG_INF)
    idle[BLANK_INDEX] = 0.0              # past the end: a certain blank keeps every beam's total
    bk = np.arange(B)[:, None]
    for t in range(int(lengths.max()) if B else 0):
        row = np.where((t < lengths)[:, None], lp[:, t].astype(np.float64), idle)
        cands = nonblank[(row[:, 1:] >= min_logp).any(0)]
        M = cands.size
        total = np.logaddexp(pb, pnb)
        stay_b = total + row[:, BLANK_INDEX: BLANK_INDEX + 1]
        stay_nb = np.where(last > 0, pnb + np.take_along_axis(row, last, 1), _NEG_INF)
        if M:
            rc = row[:, cands]
            rc[rc < min_logp] = _NEG_INF
            ext = np.where(cands == last[:, :, None], pb[:, :, None], total[:, :, None]) + rc[:, None, :]
            # growing beam i by c gives beam j's prefix when j's parent is i and c is j's last
            pos[cands] = np.arange(M)
            b, j, i = np.nonzero(par[:, :, None] == nodes[:, None, :])
            m = pos[last[b, j]]
            ok = m >= 0
            b, j, i, m = b[ok], j[ok], i[ok], m[ok]
            stay_nb[b, j] = np.logaddexp(stay_nb[b, j], ext[b, i, m])
            ext[b, i, m] = _NEG_INF
            pos[cands] = -1
            scores = np.concatenate([np.logaddexp(stay_b, stay_nb), ext.reshape(B, K * M)], 1)
        else:
            scores = np.logaddexp(stay_b, stay_nb)
        top = np.argpartition(scores, -K, 1)[:, -K:] if scores.shape[1] > K else np.broadcast_to(np.arange(K), (B, K))
        sel = np.take_along_axis(scores, top, 1)
        stay_idx = np.where(top < K, top, 0)
        new_nodes = np.take_along_axis(nodes, stay_idx, 1)
        new_par = np.take_along_axis(par, stay_idx, 1)
        new_last = np.take_along_axis(last, stay_idx, 1)
        new_pb = np.take_along_axis(stay_b, stay_idx, 1)
        new_pnb = np.take_along_axis(stay_nb, stay_idx, 1)
        gb, gk = np.nonzero((top >= K) & (sel > _NEG_INF))
        if gb.size:
            gi, gm = np.divmod(top[gb, gk] - K, M)
            src, chars = nodes[gb, gi], cands[gm]
            grown = []
            for a, c in zip(src.tolist(), chars.tolist()):
                node = children.get((a, c))
                if node is None:
                    node = children[(a, c)] = len(parent)
                    parent.append(a)
                    label.append(c)
                grown.append(node)
            new_nodes[gb, gk] = grown
            new_par[gb, gk] = src
            new_last[gb, gk] = chars
            new_pb[gb, gk] = _NEG_INF
            new_pnb[gb, gk] = ext[gb, gi, gm]
        dead = ~(sel > _NEG_INF)
        new_nodes[dead], new_par[dead], new_last[dead] = _DEAD, _DEAD_PARENT, 0
        new_pb[dead] = new_pnb[dead] = _NEG_INF
        nodes, par, last, pb, pnb = new_nodes, new_par, new_last, new_pb, new_pnb
    total = np.logaddexp(pb, pnb)
    best = total.argmax(1)
    out = []
    for b in range(B):
        ids: list[int] = []
        n = int(nodes[b, best[b]])
        while n >= B:
            ids.append(label[n])
            n = parent[n]
        out.append((ids[::-1], float(total[b, best[b]])))
    return out


def _tf_beam_search(lp: np.ndarray, ln: np.ndarray, beam_width: int) -> list[tuple[list[int], float]]:
    """``tf.nn.ctc_beam_search_decoder`` with the blank rolled to the last class."""
    import tensorflow as tf

    B, T, C = lp.shape
    rolled = np.concatenate([lp[..., 1:], lp[..., :1]], axis=-1)       # blank last
    decoded, scores = tf.nn.ctc_beam_search_decoder(
        tf.transpose(tf.constant(rolled), [1, 0, 2]), tf.constant(ln, tf.int32),
        beam_width=beam_width, top_paths=1)
    sp = decoded[0]
    idx, vals = sp.indices.numpy(), sp.values.numpy()
    out: list[tuple[list[int], float]] = [([], float(s)) for s in scores.numpy()[:, 0]]
    for (b, _), v in zip(idx.tolist(), vals.tolist()):
        out[b][0].append(int(v) + 1)                                       # back to blank = 0
    return out


# -- the registry ----------------------------------------------------------------------------------
class _Lazy:
    """A factory importing ``module.cls`` on first use (LM decoders load flashlight/kenlm late)."""

    def __init__(self, module: str, cls: str):
        self.module, self.cls = module, cls

    def target(self) -> Callable[..., Decoder]:
        import importlib

        return getattr(importlib.import_module(self.module), self.cls)

    def __call__(self, **options: Any) -> Decoder:
        return self.target()(**options)

    @property
    def __signature__(self) -> Any:   # what get_decoder lists as valid options
        import inspect

        return inspect.signature(self.target())


_REGISTRY: dict[str, Callable[..., Decoder]] = {
    "greedy": GreedyDecoder,
    "beam": BeamSearchDecoder,
    # LM decoders (htr_tf.decode.beam_lm / .lexicon): flashlight-text + KenLM, hnswlib
    "beam+lm": _Lazy("htr_tf.decode.beam_lm", "WordLMDecoder"),
    "beam+charlm": _Lazy("htr_tf.decode.beam_lm", "CharLMDecoder"),
    "lexicon": _Lazy("htr_tf.decode.lexicon", "GreedyLexiconDecoder"),
    "beam+lm+lexicon": _Lazy("htr_tf.decode.lexicon", "WordLMLexiconDecoder"),
}


def register_decoder(name: str, factory: Callable[..., Decoder]) -> None:
    """Add a decoder (e.g. ``beam+lm``) under ``name``; re-registering a name is an error."""
    if name in _REGISTRY and _REGISTRY[name] is not factory:
        raise ValueError(f"decoder {name!r} is already registered")
    _REGISTRY[name] = factory


def available_decoders() -> list[str]:
    """Names accepted by :func:`get_decoder`."""
    return list(_REGISTRY)


def _factory(name: str) -> Callable[..., Decoder]:
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ConfigError(f"unknown decoder {name!r}; valid choices: {', '.join(available_decoders())}")
    return factory


def decoder_option_names(name: str) -> list[str] | None:
    """The options decoder ``name`` accepts, or None when its factory takes any (``**kwargs``)."""
    import inspect

    try:
        params = inspect.signature(_factory(name)).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.name != "self"]


def get_decoder(name: str, **options: Any) -> Decoder:
    """Build the decoder called ``name`` with ``options``; a bad name or option is a ConfigError."""
    factory = _factory(name)
    try:
        return factory(**options)
    except TypeError as e:
        raise ConfigError(f"decoder {name!r}: bad options {sorted(options)} ({e}); "
                          f"valid options: {decoder_option_names(name) or []}") from None


#: What ``htr ocr`` uses when no decoder is named and the lm extra is installed.
BEST_DECODER = "beam+lm"


def lm_extra_installed() -> bool:
    """Whether the lm extra's decoders can run here (flashlight-text and kenlm are installed);
    checked without importing them, so ``htr --help`` stays fast."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("flashlight", "kenlm"))


def default_decoder() -> str:
    """The best decoder this installation runs: :data:`BEST_DECODER` (word 4-gram beam search,
    the lowest CER and WER of README's measurements on synthetic pages) with the lm extra,
    ``greedy`` without it."""
    return BEST_DECODER if lm_extra_installed() else "greedy"


# -- a model's tuned decoder settings ---------------------------------------------------------------
#: Key of a recogniser's ``htr.json`` holding tuned decoder settings (``htr lm tune --save``):
#: ``{"decoding": {NAME: {"options": {...constructor options}, "tuned": {...where they came from}}}}``
#: (defined with the bundle format, :data:`htr_tf.bundle.DECODING_KEY`).


def decoder_defaults(decoding: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    """The tuned options of decoder ``name`` in a model's ``decoding`` section ({} when none).

    Decoder weights depend on the recogniser (how sharp its posteriors are), so they travel
    with the model's ``htr.json`` like its charset; a malformed entry is a ModelError.
    """
    if not decoding:
        return {}
    if not isinstance(decoding, Mapping):
        raise ModelError(f"the model's {DECODING_KEY!r} metadata is not an object: {decoding!r}")
    entry = decoding.get(name)
    if entry is None:
        return {}
    options = entry.get("options") if isinstance(entry, Mapping) else None
    if not isinstance(options, Mapping):
        raise ModelError(f"the model's tuned settings for decoder {name!r} have no 'options' object: {entry!r}")
    return dict(options)


def build_decoder(decoder: "str | Decoder", decoding: Mapping[str, Any] | None = None,
                  options: Mapping[str, Any] | None = None) -> Decoder:
    """A decoder for a model: ``decoder`` by name with the model's tuned defaults
    (:func:`decoder_defaults` of its ``decoding`` section), ``options`` overriding them.

    A decoder object is returned as is (giving ``options`` with it is a ConfigError).  An
    option the decoder does not take is a ConfigError listing the valid ones.

    >>> build_decoder("beam", {"beam": {"options": {"beam_width": 7, "min_prob": 0.0}}},
    ...               {"beam_width": 3}).options()
    {'beam_width': 3, 'min_prob': 0.0, 'backend': 'numpy'}
    """
    options = dict(options or {})
    if not isinstance(decoder, str):
        if options:
            raise ConfigError("decoder options go with a decoder name, not a decoder object")
        return decoder
    tuned = decoder_defaults(decoding, decoder)
    valid = decoder_option_names(decoder)
    if valid is not None:
        bad = sorted(set(options) - set(valid))
        if bad:
            raise ConfigError(f"decoder {decoder!r}: unknown options {bad}; valid options: {valid}")
        bad = sorted(set(tuned) - set(valid))
        if bad:
            raise ConfigError(f"decoder {decoder!r}: the model's tuned settings (htr.json {DECODING_KEY!r}) "
                              f"have unknown options {bad}; valid options: {valid}")
    return get_decoder(decoder, **{**tuned, **options})


def option_value(text: str) -> Any:
    """A command-line option value: int, float, bool (true/false), none, else the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_decoder_options(items: Sequence[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` strings (``--decoder-option``) to a dict of typed values.

    >>> parse_decoder_options(["lm_weight=1.5", "beam_width=20", "backend=tf", "beam_size_token=none"])
    {'lm_weight': 1.5, 'beam_width': 20, 'backend': 'tf', 'beam_size_token': None}
    """
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--decoder-option takes KEY=VALUE, got {item!r}")
        out[key.strip()] = option_value(value)
    return out


# -- the TF twin of the greedy decoder (served graphs) -------------------------------------------
def tf_greedy_decode(log_probs, lengths, chars: str, with_counts: bool = False, with_ids: bool = False):
    """In-graph greedy decoding, equal to :class:`GreedyDecoder`'s text and confidence.

    ``log_probs [B, T, C]`` float, ``lengths [B]`` int; ``chars`` the charset's characters
    (id ``i`` is ``chars[i - 1]``).  Returns ``(text [B] string, confidence [B] float32)``, and
    with ``with_counts`` the number of characters read ``[B]`` int32 too, and with ``with_ids``
    each line's character ids (ragged int32 ``[B, None]``) last.
    """
    import tensorflow as tf

    log_probs = tf.convert_to_tensor(log_probs, tf.float32)
    lengths = tf.cast(lengths, tf.int32)
    shape = tf.shape(log_probs)
    B, T = shape[0], shape[1]
    best = tf.argmax(log_probs, axis=-1, output_type=tf.int32)
    maxp = tf.exp(tf.reduce_max(log_probs, axis=-1))
    valid = tf.sequence_mask(lengths, T)
    best = tf.where(valid, best, -1)
    prev = tf.concat([tf.fill([B, 1], -2), best[:, :-1]], axis=1)
    new_run = tf.reshape(tf.not_equal(best, prev), [-1])
    flat_best = tf.reshape(best, [-1])
    run_id = tf.cumsum(tf.cast(new_run, tf.int32)) - 1
    run_max = tf.math.segment_max(tf.reshape(maxp, [-1]), run_id)
    is_char = tf.logical_and(new_run, flat_best > 0)
    char_pos = tf.where(is_char)[:, 0]
    char_ids = tf.gather(flat_best, char_pos)
    char_conf = tf.gather(run_max, tf.gather(run_id, char_pos))
    rows = tf.cast(char_pos // tf.cast(T, tf.int64), tf.int64)
    nrows = tf.cast(B, tf.int64)
    table = tf.constant([""] + list(chars))
    ragged_chars = tf.RaggedTensor.from_value_rowids(tf.gather(table, char_ids), rows, nrows=nrows)
    text = tf.strings.reduce_join(ragged_chars, axis=-1)
    conf_sum = tf.math.unsorted_segment_sum(char_conf, rows, B)
    n_chars = tf.math.unsorted_segment_sum(tf.ones_like(char_conf), rows, B)
    validf = tf.cast(valid, tf.float32)
    frames = tf.reduce_sum(validf, axis=1)
    blank_conf = tf.math.divide_no_nan(tf.reduce_sum(maxp * validf, axis=1), frames)
    confidence = tf.where(n_chars > 0, tf.math.divide_no_nan(conf_sum, n_chars), blank_conf)
    out = (text, confidence) + ((tf.cast(n_chars, tf.int32),) if with_counts else ())
    if with_ids:
        out += (tf.RaggedTensor.from_value_rowids(char_ids, rows, nrows=nrows),)
    return out
