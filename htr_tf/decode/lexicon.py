"""Lexicon search: replace recognised words that are probably misspelled by lexicon words.

For every recognised word, an hnswlib index over character n-gram vectors of the lexicon
(hashed 1-3-grams of the lower-cased word with ``<``/``>`` boundary markers, L2-normalised,
cosine space) proposes ``k`` candidates.  Each candidate is scored as

    prior_weight * log P(candidate | previous words)  -  edit_weight * weighted_edit_distance

where the prior is the word LM in context (natural log; the bundled Brown 4-gram by
default) or, without an LM, the candidate's relative frequency in the lexicon.  The
recognised word itself is scored the same way (distance 0), and is replaced only when a
candidate beats it by ``margin`` and beats the runner-up candidate by ``margin / 2``.  Only the alphabetic core of a word is corrected:
leading/trailing punctuation is kept, words with digits are left alone, and the case of
the recognised word is restored on the replacement (``Tne`` -> ``The``, ``TNE`` -> ``THE``;
a lower-case word takes the lexicon's most frequent spelling, so ``atlamta`` -> ``Atlanta``).

Edit costs default to 1; :meth:`LexiconCorrector.fit_confusions` learns cheaper costs for
the substitutions, insertions and deletions a recogniser actually makes from validation
references and hypotheses.

The index is built once and saved beside the lexicon (``NAME.hnsw`` plus ``NAME.hnsw.json``
with a fingerprint of the word list and the vector settings), or, where that directory is
not writable, in ``$XDG_CACHE_HOME/htr-tf/`` (``~/.cache``); a stale index is rebuilt.

Decoders ``lexicon`` (greedy, then lexicon search) and ``beam+lm+lexicon`` (``beam+lm``,
then lexicon search) re-align corrected lines to get character spans and confidences.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from htr_tf.charset import Charset
from htr_tf.decode.ctc import DecodedLine, GreedyDecoder, check_inputs
from htr_tf.decode.lm import BUNDLED_WORD_LM, lm_sidecars, read_lexicon
from htr_tf.errors import ConfigError, DataError, ModelError
from htr_tf.fileio import atomic_path, atomic_write_text

__all__ = ["LexiconCorrector", "GreedyLexiconDecoder", "WordLMLexiconDecoder", "word_vectors",
           "weighted_edit_distance", "split_word", "index_beside"]

INDEX_FORMAT_VERSION = 1
_CORE = re.compile(r"^([^\w]*)(.*?)([^\w]*)$", re.UNICODE)
_ALPHA_CORE = re.compile(r"^[^\W\d_](?:[^\W\d_]|['\-])*$", re.UNICODE)   # letters, inner ' and -


def index_beside(lexicon: str | os.PathLike) -> Path:
    """The index file kept beside a lexicon: ``NAME.lexicon.tsv[.gz]`` -> ``NAME.hnsw``."""
    p = Path(lexicon)
    for suf in (".lexicon.tsv.gz", ".lexicon.tsv", ".tsv.gz", ".tsv", ".txt.gz", ".txt"):
        if p.name.endswith(suf) and len(p.name) > len(suf):
            return p.with_name(p.name[: -len(suf)] + ".hnsw")
    return p.with_name(p.name + ".hnsw")


def split_word(word: str) -> tuple[str, str, str]:
    """``(leading punctuation, core, trailing punctuation)``.

    >>> split_word('"Hello,')
    ('"', 'Hello', ',')
    >>> split_word("don't.")
    ('', "don't", '.')
    """
    m = _CORE.match(word)
    assert m is not None
    return m.group(1), m.group(2), m.group(3)


def _correctable(core: str) -> bool:
    return len(core) >= 2 and bool(_ALPHA_CORE.match(core)) and not core.endswith(("'", "-"))


def _restore_case(hyp: str, cand: str, surface: str) -> str:
    """``cand`` (lower case) spelled with ``hyp``'s case pattern; ``surface`` is the lexicon's own spelling."""
    if len(hyp) > 1 and hyp.isupper():
        return cand.upper()
    if hyp[:1].isupper():
        return surface[:1].upper() + surface[1:]
    return surface


# -- vectors ------------------------------------------------------------------------------------
def word_vectors(words: Sequence[str], dim: int = 256, n_max: int = 3) -> np.ndarray:
    """L2-normalised hashed character 1..``n_max``-gram counts of ``<word>`` (float32 ``[N, dim]``).

    Unigrams weigh 0.5 (they carry little order information), longer n-grams 1.
    """
    out = np.zeros((len(words), dim), np.float32)
    for i, w in enumerate(words):
        s = f"<{w.lower()}>"
        for n in range(1, n_max + 1):
            weight = 0.5 if n == 1 else 1.0
            for j in range(len(s) - n + 1):
                g = s[j: j + n]
                if n == 1 and g in "<>":
                    continue
                out[i, zlib.crc32(g.encode("utf-8")) % dim] += weight
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norm, 1e-12)


# -- weighted edit distance -------------------------------------------------------------------------
def weighted_edit_distance(a: str, b: str, sub: dict[tuple[str, str], float] | None = None,
                           ins: dict[str, float] | None = None, dele: dict[str, float] | None = None,
                           default: float = 1.0) -> float:
    """Levenshtein distance from ``a`` (recognised) to ``b`` (candidate) with per-character costs.

    ``sub[(x, y)]`` is the cost of reading true ``y`` as ``x`` ... expressed from the
    candidate's side: ``sub[(true, read)]``, ``ins[read]`` (a character the recogniser
    added), ``dele[true]`` (one it missed); missing entries cost ``default``.

    >>> weighted_edit_distance("tne", "the")
    1.0
    >>> weighted_edit_distance("tne", "the", sub={("h", "n"): 0.25})
    0.25
    """
    sub = sub or {}
    ins = ins or {}
    dele = dele or {}
    prev = [0.0]
    for ch in b:
        prev.append(prev[-1] + dele.get(ch, default))
    for x in a:
        cur = [prev[0] + ins.get(x, default)]
        for j, y in enumerate(b, 1):
            c_sub = prev[j - 1] + (0.0 if x == y else sub.get((y, x), default))
            c_ins = prev[j] + ins.get(x, default)          # x read but not in the candidate
            c_del = cur[j - 1] + dele.get(y, default)      # y in the candidate but not read
            cur.append(min(c_sub, c_ins, c_del))
        prev = cur
    return prev[-1]


def _align_ops(ref: str, hyp: str) -> list[tuple[str, str]]:
    """Levenshtein alignment of ``ref`` and ``hyp`` as (ref char or '', hyp char or '') pairs."""
    n, m = len(ref), len(hyp)
    d = np.zeros((n + 1, m + 1), np.int32)
    d[:, 0] = np.arange(n + 1)
    d[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]))
    ops = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i, j] == d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            ops.append((ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif i > 0 and d[i, j] == d[i - 1, j] + 1:
            ops.append((ref[i - 1], ""))
            i -= 1
        else:
            ops.append(("", hyp[j - 1]))
            j -= 1
    return ops[::-1]


# -- the corrector --------------------------------------------------------------------------------------
class LexiconCorrector:
    """Proposes lexicon words for recognised words (hnswlib) and replaces the clear winners.

    ``lexicon``: a lexicon file (``word<TAB>count``) or a ``{word: count}`` mapping; words
    are reduced to their lower-cased alphabetic cores and counts summed; cores seen fewer
    than ``min_count`` times are left out.  ``lm``: a word KenLM file for the in-context
    prior (``None``: unigram frequencies).  ``k`` candidates per word, ``margin`` nats
    that a replacement must win by.
    """

    def __init__(self, lexicon: str | os.PathLike | dict[str, int] | None = None,
                 lm: str | os.PathLike | None | bool = True, k: int = 10, min_count: int = 2,
                 edit_weight: float = 3.0, prior_weight: float = 1.0, margin: float = 1.0,
                 max_distance: float = 2.0, dim: int = 256, index_path: str | os.PathLike | None = None,
                 ef: int = 64):
        if k < 1:
            raise ConfigError(f"lexicon: k must be >= 1, got {k}")
        if lexicon is None:
            lexicon = lm_sidecars(BUNDLED_WORD_LM)["lexicon"]
        if lm is True:
            lm = BUNDLED_WORD_LM if lexicon == lm_sidecars(BUNDLED_WORD_LM)["lexicon"] else None
        self.source = str(lexicon) if not isinstance(lexicon, dict) else "<dict>"
        counts = read_lexicon(lexicon) if not isinstance(lexicon, dict) else dict(lexicon)
        if not counts:
            raise DataError(f"{self.source}: the lexicon is empty")
        cores: Counter = Counter()
        spellings: dict[str, Counter] = defaultdict(Counter)
        for w, c in counts.items():
            _, core, _ = split_word(w)
            if _correctable(core):
                cores[core.lower()] += c
                spellings[core.lower()][core] += c
        self.words = sorted((w for w, c in cores.items() if c >= min_count), key=lambda w: (-cores[w], w))
        if not self.words:
            raise DataError(f"{self.source}: the lexicon has no alphabetic word seen {min_count}+ times")
        self.counts = {w: cores[w] for w in self.words}
        self.surface = {w: spellings[w].most_common(1)[0][0] for w in self.words}
        self.total = float(sum(self.counts.values()))
        self.k, self.min_count, self.dim, self.ef = int(k), int(min_count), int(dim), int(ef)
        self.edit_weight, self.prior_weight = float(edit_weight), float(prior_weight)
        self.margin, self.max_distance = float(margin), float(max_distance)
        self.sub: dict[tuple[str, str], float] = {}
        self.ins: dict[str, float] = {}
        self.dele: dict[str, float] = {}
        self.lm_path = Path(lm) if lm else None
        self._lm: Any = None
        self._index: Any = None
        self._index_path = Path(index_path) if index_path else None
        self._lexicon_path = None if isinstance(lexicon, dict) else Path(lexicon)

    # -- the index -----------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Hash of the word list and vector settings: an index built for another one is stale."""
        h = hashlib.sha1()
        h.update(f"v{INDEX_FORMAT_VERSION} dim={self.dim} n=3\n".encode())
        h.update("\n".join(self.words).encode("utf-8"))
        return h.hexdigest()

    def index_path(self) -> Path:
        """Where the index is read from or written to.

        The ``index_path`` given, else a fresh index beside the lexicon (``NAME.hnsw``, made
        by ``htr lm build --index`` or :meth:`build_index`), else the user cache
        (``$XDG_CACHE_HOME/htr-tf/lexicon-FINGERPRINT.hnsw``), so a package directory is
        never written to implicitly.
        """
        if self._index_path is not None:
            return self._index_path
        if self._lexicon_path is not None:
            beside = index_beside(self._lexicon_path)
            if self._is_fresh(beside):
                return beside
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "htr-tf"
        return cache / f"lexicon-{self.fingerprint()[:16]}.hnsw"

    def _is_fresh(self, path: Path) -> bool:
        meta_path = path.with_name(path.name + ".json")
        if not (path.exists() and meta_path.exists()):
            return False
        try:
            return json.loads(meta_path.read_text(encoding="utf-8")).get("fingerprint") == self.fingerprint()
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            return False

    def build_index(self, path: str | os.PathLike | None = None) -> Path:
        """Build the hnswlib index and save it atomically (with its ``.json`` fingerprint)."""
        import hnswlib

        path = Path(path) if path is not None else self.index_path()
        vecs = word_vectors(self.words, self.dim)
        index = hnswlib.Index(space="cosine", dim=self.dim)
        index.init_index(max_elements=len(self.words), M=16, ef_construction=100, random_seed=0)
        index.add_items(vecs, np.arange(len(self.words)), num_threads=1)
        with atomic_path(path, suffix=".hnsw") as tmp:
            index.save_index(str(tmp))
        atomic_write_text(path.with_name(path.name + ".json"), json.dumps(
            {"format_version": INDEX_FORMAT_VERSION, "fingerprint": self.fingerprint(),
             "words": len(self.words), "dim": self.dim, "lexicon": self.source}, indent=2) + "\n")
        index.set_ef(max(self.ef, self.k))
        self._index = index
        return path

    def _get_index(self) -> Any:
        if self._index is not None:
            return self._index
        try:
            import hnswlib
        except ImportError:
            raise ModelError("lexicon search needs hnswlib: pip install 'htr-tf[lm]'") from None
        path = self.index_path()
        fresh = self._is_fresh(path)
        if fresh:
            index = hnswlib.Index(space="cosine", dim=self.dim)
            try:
                index.load_index(str(path), max_elements=len(self.words))
            except (RuntimeError, ValueError) as e:
                raise ModelError(f"{path}: corrupt lexicon index ({e}); delete it to rebuild") from None
            index.set_ef(max(self.ef, self.k))
            self._index = index
        else:
            try:
                self.build_index(path)
            except OSError:   # not writable after all: keep it in memory only
                self._build_in_memory()
        return self._index

    def _build_in_memory(self) -> None:
        import hnswlib

        index = hnswlib.Index(space="cosine", dim=self.dim)
        index.init_index(max_elements=len(self.words), M=16, ef_construction=100, random_seed=0)
        index.add_items(word_vectors(self.words, self.dim), np.arange(len(self.words)), num_threads=1)
        index.set_ef(max(self.ef, self.k))
        self._index = index

    def candidates(self, words: Sequence[str]) -> list[list[str]]:
        """The ``k`` nearest lexicon words (lower-case cores) of each word."""
        if not words:
            return []
        index = self._get_index()
        k = min(self.k, len(self.words))
        labels, _ = index.knn_query(word_vectors([w.lower() for w in words], self.dim), k=k, num_threads=1)
        return [[self.words[i] for i in row] for row in labels.tolist()]

    # -- the prior --------------------------------------------------------------------------------
    def _get_lm(self) -> Any:
        if self._lm is None and self.lm_path is not None:
            from htr_tf.decode.lm import load_kenlm

            self._lm = load_kenlm(self.lm_path)
        return self._lm

    def _unigram_logp(self, core: str) -> float:
        """log relative frequency; a word outside the lexicon counts as 0.1 of an occurrence."""
        c = self.counts.get(core.lower())
        return math.log((c if c else 0.1) / self.total)

    # -- learning edit costs --------------------------------------------------------------------------
    def fit_confusions(self, refs: Sequence[str], hyps: Sequence[str], prior_count: float = 5.0,
                       min_cost: float = 0.2) -> dict[str, int]:
        """Learn edit costs from reference/hypothesis pairs (e.g. a validation set's greedy output).

        An operation seen ``m`` times costs ``max(min_cost, prior_count / (prior_count + m))``
        (1 when never seen): the recogniser's habitual confusions become cheap to undo.
        Returns how many substitutions, insertions and deletions were counted.
        """
        if len(refs) != len(hyps):
            raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
        sub: Counter = Counter()
        ins: Counter = Counter()
        dele: Counter = Counter()
        for r, h in zip(refs, hyps):
            for a, b in _align_ops(r.lower(), h.lower()):
                if a and b and a != b:
                    sub[(a, b)] += 1
                elif b and not a:
                    ins[b] += 1
                elif a and not b:
                    dele[a] += 1

        def cost(m: int) -> float:
            return max(min_cost, prior_count / (prior_count + m))

        self.sub = {k: cost(m) for k, m in sub.items()}
        self.ins = {k: cost(m) for k, m in ins.items()}
        self.dele = {k: cost(m) for k, m in dele.items()}
        return {"substitutions": sum(sub.values()), "insertions": sum(ins.values()),
                "deletions": sum(dele.values())}

    # -- correcting ---------------------------------------------------------------------------------------
    def correct(self, text: str) -> str:
        """One line of text with clearly misspelled words replaced."""
        return self.correct_lines([text])[0]

    def correct_lines(self, texts: Sequence[str]) -> list[str]:
        """:meth:`correct` for many lines (the candidate search is batched)."""
        split = [t.split(" ") for t in texts]
        todo: list[tuple[int, int, str]] = []
        for li, words in enumerate(split):
            for wi, w in enumerate(words):
                core = split_word(w)[1]
                if _correctable(core):
                    todo.append((li, wi, core))
        cands = self.candidates([c for _, _, c in todo])
        by_word = {(li, wi): c for (li, wi, _), c in zip(todo, cands)}
        lm = self._get_lm()
        out = []
        for li, words in enumerate(split):
            out.append(" ".join(self._correct_words(words, by_word, li, lm)))
        return out

    def _correct_words(self, words: list[str], by_word: dict, li: int, lm: Any) -> list[str]:
        state = None
        if lm is not None:
            import kenlm

            state = kenlm.State()
            lm.BeginSentenceWrite(state)
        result = []
        ln10 = math.log(10.0)
        for wi, w in enumerate(words):
            cands = by_word.get((li, wi))
            choice = w
            if cands:
                pre, core, post = split_word(w)
                low = core.lower()
                options = {low: core}
                for c in cands:
                    if c != low:
                        options[c] = _restore_case(core, c, self.surface[c])
                best_word, best_score, own_score, second = w, -math.inf, -math.inf, -math.inf
                for cand, spelled in options.items():
                    dist = 0.0 if cand == low else weighted_edit_distance(
                        low, cand, self.sub, self.ins, self.dele)
                    if dist > self.max_distance:
                        continue
                    surface = pre + spelled + post
                    if lm is not None:
                        prior = lm.BaseScore(state, surface, kenlm.State()) * ln10
                    else:
                        prior = self._unigram_logp(cand)
                    score = self.prior_weight * prior - self.edit_weight * dist
                    if cand == low:
                        own_score = score
                        continue
                    if score > best_score:
                        best_word, best_score, second = surface, score, best_score
                    elif score > second:
                        second = score
                # a clear winner: better than the word as read by the margin, and than the
                # runner-up by half of it (two equally good candidates: leave the word alone)
                if best_score - own_score >= self.margin and best_score - second >= self.margin / 2:
                    choice = best_word
            if lm is not None:
                nxt = kenlm.State()
                lm.BaseScore(state, choice, nxt)
                state = nxt
            result.append(choice)
        return result

    def options(self) -> dict[str, Any]:
        return {"lexicon": self.source, "lm": str(self.lm_path) if self.lm_path else None, "k": self.k,
                "min_count": self.min_count, "edit_weight": self.edit_weight,
                "prior_weight": self.prior_weight, "margin": self.margin,
                "max_distance": self.max_distance, "learned_costs": len(self.sub) + len(self.ins) + len(self.dele)}


# -- decoders -----------------------------------------------------------------------------------------
class _LexiconDecoderBase:
    """A base decoder followed by lexicon search; corrected lines are re-aligned."""

    name = ""

    def __init__(self, base: Any, corrector: LexiconCorrector):
        self.base = base
        self.corrector = corrector

    @property
    def language(self) -> str | None:
        """The base decoder's LM language (:attr:`htr_tf.decode.beam_lm.WordLMDecoder.language`)."""
        return getattr(self.base, "language", None)

    @property
    def language_gate(self) -> bool:
        return bool(getattr(self.base, "language_gate", False))

    def options(self) -> dict[str, Any]:
        return {**self.base.options(), **{f"lexicon_{k}" if k in ("lm",) else k: v
                                          for k, v in self.corrector.options().items()}}

    def decode(self, log_probs: np.ndarray, lengths: np.ndarray | Sequence[int],
               charset: Charset) -> list[DecodedLine]:
        from htr_tf.decode.beam_lm import lines_from_ids

        lp, ln = check_inputs(log_probs, lengths, charset)
        lines = self.base.decode(lp, ln, charset)
        fixed = self.corrector.correct_lines([line.text for line in lines])
        changed = [i for i, (line, t) in enumerate(zip(lines, fixed)) if t != line.text]
        if changed:
            redo = lines_from_ids(lp[changed], ln[changed],
                                  [charset.encode(fixed[i], policy="drop") for i in changed],
                                  [lines[i].score for i in changed], charset)
            for i, line in zip(changed, redo):
                lines[i] = line
        return lines

    def close(self) -> None:
        close = getattr(self.base, "close", None)
        if close is not None:
            close()


class GreedyLexiconDecoder(_LexiconDecoderBase):
    """``lexicon``: greedy decoding, then lexicon search (:class:`LexiconCorrector` options)."""

    name = "lexicon"

    def __init__(self, lexicon: str | os.PathLike | None = None, lm: str | os.PathLike | None | bool = True,
                 k: int = 10, min_count: int = 2, edit_weight: float = 3.0, prior_weight: float = 1.0,
                 margin: float = 1.0, max_distance: float = 2.0):
        super().__init__(GreedyDecoder(), LexiconCorrector(
            lexicon, lm, k=k, min_count=min_count, edit_weight=edit_weight, prior_weight=prior_weight,
            margin=margin, max_distance=max_distance))


class WordLMLexiconDecoder(_LexiconDecoderBase):
    """``beam+lm+lexicon``: ``beam+lm`` (its options), then lexicon search over the LM's lexicon."""

    name = "beam+lm+lexicon"

    def __init__(self, lm: str | os.PathLike | None = None, lexicon: str | os.PathLike | None = None,
                 beam_width: int = 50, beam_size_token: int | None = 8, beam_threshold: float = 15.0,
                 lm_weight: float = 1.0, word_score: float = 0.0, unk_score: float = -2.0,
                 sil_score: float = 0.0, workers: int | str = 1, k: int = 10, min_count: int = 2,
                 edit_weight: float = 3.0, prior_weight: float = 1.0, margin: float = 1.0,
                 max_distance: float = 2.0, language: str | None = None, language_gate: bool = True):
        from htr_tf.decode.beam_lm import WordLMDecoder

        base = WordLMDecoder(lm, lexicon, beam_width, beam_size_token, beam_threshold, lm_weight,
                             word_score, unk_score, sil_score, workers, language, language_gate)
        lex = lexicon if lexicon is not None else lm_sidecars(base.lm_path)["lexicon"]
        super().__init__(base, LexiconCorrector(
            lex, base.lm_path, k=k, min_count=min_count, edit_weight=edit_weight,
            prior_weight=prior_weight, margin=margin, max_distance=max_distance))
