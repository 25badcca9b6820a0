"""CTC beam search with an n-gram LM, on flashlight-text's C++ decoders and KenLM.

* ``beam+lm`` (:class:`WordLMDecoder`): flashlight's ``LexiconDecoder`` over a trie of the
  LM's lexicon with a word n-gram (default: the bundled Brown 4-gram).  With a finite
  ``unk_score`` the vocabulary is open, the flashlight way: an out-of-lexicon word is
  spelled as fragments that are prefixes of lexicon words, each paying ``unk_score`` and
  the LM's ``<unk>`` score (``-inf`` closes the vocabulary).
* ``beam+charlm`` (:class:`CharLMDecoder`): flashlight's ``LexiconFreeDecoder`` with a
  character n-gram (``htr lm build --char``), which keeps unseen words more often.

Scores: ``am + lm_weight * lm + word_score * words (+ unk_score per unknown word)``, where
``am`` is the recogniser's natural-log probability and ``lm`` KenLM's log10 score, so
``lm_weight`` is pyctcdecode's ``alpha * ln 10``.

Token mapping: flashlight's token ``i`` is the recogniser's class ``i``: 0 is the CTC
blank, ``i >= 1`` is ``charset.chars[i - 1]``, except that the space class is written as
the word-boundary token (``|``, see :func:`htr_tf.decode.lm.boundary_token`), which is
flashlight's word separator and the char LM's boundary token, so emissions need no
reordering and token strings equal the char LM's vocabulary.

The gotchas measured in DESIGN.md are handled here: ``log_add=True``; one frame with
``log p(separator) = 0`` is appended to every line so its last word is completed and
scored; emissions go to C++ as C-contiguous float32; the frame path flashlight returns
is collapsed here (repeats merged, blanks dropped).  A character's span is its run in
that path and its confidence the largest probability over the run (the definition of
:mod:`htr_tf.decode.ctc`, with flashlight's best path as the alignment: forced alignment
would cost 30-40% more time for the same text).

flashlight's ``decode()`` holds the GIL (measured: a second Python thread makes no
progress while it runs), so ``workers > 1`` decodes a batch in a pool of processes, each
with its own LM and trie, built once and kept for the decoder's lifetime.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from htr_tf.charset import BLANK_INDEX, Charset
from htr_tf.decode.ctc import DecodedLine, check_inputs, forced_align_batch
from htr_tf.decode.language import FUNCTION_WORDS
from htr_tf.decode.lm import (
    BUNDLED_LM_DIR, BUNDLED_WORD_LM, UNK, check_charset, check_lm_file, lm_sidecars, read_lexicon,
    read_meta,
)
from htr_tf.errors import ConfigError, DataError, ModelError

__all__ = ["WordLMDecoder", "CharLMDecoder", "BUNDLED_CHAR_LM", "flashlight_available"]

#: The default char LM (built by training/lm.md's recipe from the bundled Brown extract).
BUNDLED_CHAR_LM = BUNDLED_LM_DIR / "brown-char6.arpa.gz"
_BLANK_TOKEN = "<blank>"


def flashlight_available() -> bool:
    """Whether flashlight-text with its KenLM extension can be imported."""
    try:
        import flashlight.lib.text.decoder.kenlm  # noqa: F401  (import check)
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence KenLM's ARPA loading banner and progress bar (C++ writes to fd 2)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


# -- the recipe a process needs to build its own engine ----------------------------------------
@dataclass(frozen=True)
class _Spec:
    kind: str                      # "word" or "char"
    lm_path: str
    lexicon_path: str | None
    tokens: tuple[str, ...]        # flashlight token strings, index = recogniser class
    sil: int                       # the separator token's index (the space class)
    beam_size: int
    beam_size_token: int
    beam_threshold: float
    lm_weight: float
    word_score: float
    unk_score: float
    sil_score: float


class _Engine:
    """One flashlight decoder with its LM (and trie); lives in one process, used by one thread."""

    def __init__(self, spec: _Spec):
        from flashlight.lib.text.decoder import (
            CriterionType, LexiconDecoder, LexiconDecoderOptions, LexiconFreeDecoder,
            LexiconFreeDecoderOptions, SmearingMode, Trie,
        )
        from flashlight.lib.text.decoder.kenlm import KenLM
        from flashlight.lib.text.dictionary import Dictionary

        self.spec = spec
        if spec.kind == "word":
            words = _spellable_words(spec.lexicon_path, spec.tokens, spec.sil)
            word_dict = Dictionary([UNK] + words)
            lm = _load_flashlight_lm(KenLM, spec.lm_path, word_dict)
            trie = Trie(len(spec.tokens), spec.sil)
            start = lm.start(False)
            index = {t: i for i, t in enumerate(spec.tokens)}
            for w in words:
                wi = word_dict.get_index(w)
                _, score = lm.score(start, wi)
                trie.insert([index[c] for c in w] + [spec.sil], wi, score)
            trie.smear(SmearingMode.MAX)
            opts = LexiconDecoderOptions(
                beam_size=spec.beam_size, beam_size_token=spec.beam_size_token,
                beam_threshold=spec.beam_threshold, lm_weight=spec.lm_weight,
                word_score=spec.word_score, unk_score=spec.unk_score, sil_score=spec.sil_score,
                log_add=True, criterion_type=CriterionType.CTC)
            self.decoder = LexiconDecoder(opts, trie, lm, spec.sil, BLANK_INDEX,
                                          word_dict.get_index(UNK), [], False)
            self._keep = (lm, trie, word_dict)
        else:
            token_dict = Dictionary(list(spec.tokens))
            lm = _load_flashlight_lm(KenLM, spec.lm_path, token_dict)
            opts = LexiconFreeDecoderOptions(
                beam_size=spec.beam_size, beam_size_token=spec.beam_size_token,
                beam_threshold=spec.beam_threshold, lm_weight=spec.lm_weight,
                sil_score=spec.sil_score, log_add=True, criterion_type=CriterionType.CTC)
            self.decoder = LexiconFreeDecoder(opts, lm, spec.sil, BLANK_INDEX, [])
            self._keep = (lm, token_dict)

    def decode(self, emissions: Sequence[np.ndarray]) -> list[tuple[np.ndarray, float]]:
        """Frame paths (without the appended separator frame) and scores of ``[T, C]`` arrays."""
        out = []
        C = len(self.spec.tokens)
        for e in emissions:
            T = e.shape[0]
            em = np.full((T + 1, C), -1e4, np.float32)      # one separator frame appended
            em[:T] = e
            em[T, self.spec.sil] = 0.0
            em = np.ascontiguousarray(em)
            results = self.decoder.decode(em.ctypes.data, T + 1, C)
            if not results:
                out.append((np.zeros(0, np.int64), float("-inf")))
                continue
            best = results[0]
            path = np.asarray(best.tokens, np.int64)[1: T + 1]   # [sil] + T + 1 frames + [sil]
            out.append((path, float(best.score)))
        return out


def _load_flashlight_lm(KenLM: Any, path: str, dictionary: Any) -> Any:
    try:
        with _quiet_stderr():
            return KenLM(path, dictionary)
    except RuntimeError as e:
        msg = " ".join(str(e).split())
        raise ModelError(f"{path}: corrupt or unreadable language model ({msg[:300]})") from None


def _spellable_words(lexicon_path: str | None, tokens: Sequence[str], sil: int) -> list[str]:
    """Lexicon words whose every character is a token (and not the separator)."""
    if lexicon_path is None:
        raise ModelError("the word LM decoder needs a lexicon")
    lex = read_lexicon(lexicon_path)
    ok = set(tokens) - {tokens[sil], tokens[BLANK_INDEX]}
    words = [w for w in lex if w != UNK and all(c in ok for c in w)]
    if not words:
        raise DataError(f"{lexicon_path}: no lexicon word can be spelled with the model's charset "
                        f"(empty lexicon after filtering {len(lex)} entries)")
    return words


# -- process pool -----------------------------------------------------------------------------
_WORKER_ENGINE: _Engine | None = None


def _worker_init(spec: _Spec) -> None:
    global _WORKER_ENGINE
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _WORKER_ENGINE = _Engine(spec)


def _worker_decode(emissions: list[np.ndarray]) -> list[tuple[np.ndarray, float]]:
    assert _WORKER_ENGINE is not None
    return _WORKER_ENGINE.decode(emissions)


def _balanced_chunks(sizes: Sequence[int], n: int) -> list[list[int]]:
    """Indices split into ``n`` groups of similar total size (largest first, greedy)."""
    groups: list[list[int]] = [[] for _ in range(n)]
    load = [0] * n
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        k = load.index(min(load))
        groups[k].append(i)
        load[k] += sizes[i] + 1
    return [g for g in groups if g]


# -- the decoders ---------------------------------------------------------------------------------
class _FlashlightDecoder:
    """Shared machinery of the two decoders: engine per charset, optional process pool."""

    name = ""
    kind = ""
    #: A line's ``score`` is the recogniser's log-likelihood of its text plus the LM's prior
    #: over texts (``lm_weight * lm + word_score * words + ...``): choosing among several views'
    #: readings counts that prior too (:func:`htr_tf.readings.choose_reading`).
    scores_texts = True

    def __init__(self, lm: str | os.PathLike | None, lexicon: str | os.PathLike | None,
                 beam_width: int, beam_size_token: int | None, beam_threshold: float,
                 lm_weight: float, word_score: float, unk_score: float, sil_score: float,
                 workers: int | str, language: str | None = None, language_gate: bool = True):
        if int(beam_width) < 1:
            raise ConfigError(f"{self.name}: beam_width must be >= 1, got {beam_width}")
        if beam_size_token is not None and int(beam_size_token) < 1:
            raise ConfigError(f"{self.name}: beam_size_token must be >= 1, got {beam_size_token}")
        if not float(beam_threshold) > 0:
            raise ConfigError(f"{self.name}: beam_threshold must be > 0, got {beam_threshold}")
        if workers == "auto":
            workers = os.cpu_count() or 1
        try:
            workers = int(workers)
        except (TypeError, ValueError):
            raise ConfigError(f"{self.name}: workers must be an integer or 'auto', got {workers!r}") from None
        if workers < 1:
            raise ConfigError(f"{self.name}: workers must be >= 1, got {workers}")
        self.lm_path = Path(lm) if lm is not None else self._default_lm()
        self.lexicon_path = Path(lexicon) if lexicon is not None else None
        self.beam_width = int(beam_width)
        self.beam_size_token = None if beam_size_token is None else int(beam_size_token)
        self.beam_threshold = float(beam_threshold)
        self.lm_weight = float(lm_weight)
        self.word_score = float(word_score)
        self.unk_score = float(unk_score)
        self.sil_score = float(sil_score)
        self.workers = workers
        check_lm_file(self.lm_path)            # fail early and clearly
        #: The LM's language (its metadata's ``language``, e.g. ``"en"``; None: unknown).  With
        #: ``language_gate``, lines that read as another language keep their greedy reading
        #: (:mod:`htr_tf.decode.language`, :func:`htr_tf.recognize.recognize_crops`).
        if language is None:   # the LM's own, when it says one this module knows the words of
            language = (read_meta(self.lm_path) or {}).get("language")
            language = language if language in FUNCTION_WORDS else None
        elif language not in FUNCTION_WORDS:
            raise ConfigError(f"{self.name}: language must be one of {', '.join(FUNCTION_WORDS)}, "
                              f"got {language!r}")
        self.language = language
        self.language_gate = bool(language_gate)
        self._engines: dict[tuple[str, ...], _Engine] = {}
        self._specs: dict[str, _Spec] = {}
        self._pool: Any = None
        self._pool_key: str | None = None
        self._lock = threading.Lock()

    def _default_lm(self) -> Path:
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        return {"lm": str(self.lm_path), "lexicon": str(self.lexicon_path) if self.lexicon_path else None,
                "beam_width": self.beam_width, "beam_size_token": self.beam_size_token,
                "beam_threshold": self.beam_threshold, "lm_weight": self.lm_weight,
                "word_score": self.word_score, "unk_score": self.unk_score,
                "sil_score": self.sil_score, "workers": self.workers, "language": self.language,
                "language_gate": self.language_gate}

    # -- engines ---------------------------------------------------------------------------
    def _spec(self, charset: Charset) -> _Spec:
        key = charset.chars
        spec = self._specs.get(key)
        if spec is not None:
            return spec
        if not flashlight_available():
            raise ModelError(f"decoder {self.name} needs flashlight-text with KenLM: "
                             f"pip install 'htr-tf[lm]'")
        meta = read_meta(self.lm_path)
        model = None
        if meta is None and self.kind == "char":
            from htr_tf.decode.lm import load_kenlm

            model = load_kenlm(self.lm_path)
        boundary = check_charset(self.lm_path, self.kind, charset, meta, model)   # type: ignore[arg-type]
        if " " not in charset:
            raise ModelError(f"decoder {self.name}: the charset has no space character, "
                             f"so words cannot be separated")
        tokens = [_BLANK_TOKEN] + [boundary if c == " " else c for c in charset.chars]
        sil = tokens.index(boundary)
        lexicon = None
        if self.kind == "word":
            lexicon = self.lexicon_path or lm_sidecars(self.lm_path)["lexicon"]
            if not Path(lexicon).exists():
                raise DataError(f"{lexicon}: lexicon file not found (the word LM {self.lm_path} "
                                f"needs it; pass lexicon=...)")
        spec = _Spec(self.kind, str(self.lm_path), str(lexicon) if lexicon else None, tuple(tokens), sil,
                     self.beam_width, self.beam_size_token or len(tokens), self.beam_threshold,
                     self.lm_weight, self.word_score, self.unk_score, self.sil_score)
        self._specs[key] = spec
        return spec

    def _engine(self, spec: _Spec) -> _Engine:
        eng = self._engines.get(spec.tokens)
        if eng is None:
            eng = self._engines[spec.tokens] = _Engine(spec)
        return eng

    def _get_pool(self, spec: _Spec) -> Any:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        key = repr(spec)
        if self._pool is not None and self._pool_key == key:
            return self._pool
        self.close()
        # spawn: never fork a process that may hold TensorFlow's threads
        ctx = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_worker_init,
                                         initargs=(spec,))
        self._pool_key = key
        return self._pool

    def close(self) -> None:
        """Stop the worker processes (a later decode starts them again)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._pool_key = None

    def warm_up(self, charset: Charset) -> None:
        """Load the LM (and start the workers) now rather than on the first batch."""
        spec = self._spec(charset)
        if self.workers > 1:
            pool = self._get_pool(spec)
            list(pool.map(_worker_decode, [[] for _ in range(self.workers)]))
        else:
            self._engine(spec)

    def __enter__(self) -> "_FlashlightDecoder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_engines={}, _pool=None, _pool_key=None, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- decoding ------------------------------------------------------------------------------
    def decode_paths(self, log_probs: np.ndarray, lengths: np.ndarray | Sequence[int],
                     charset: Charset) -> list[tuple[np.ndarray, float]]:
        """Flashlight's best frame path ``[T_b]`` (class ids) and its score, per line."""
        lp, ln = check_inputs(log_probs, lengths, charset)
        B = lp.shape[0]
        if B == 0:
            return []
        spec = self._spec(charset)
        emissions = [lp[b, : int(ln[b])] for b in range(B)]
        with self._lock:
            if self.workers > 1 and B > 1:
                pool = self._get_pool(spec)
                groups = _balanced_chunks([e.shape[0] for e in emissions], min(self.workers, B))
                futures = [pool.submit(_worker_decode, [emissions[i] for i in g]) for g in groups]
                results: list[Any] = [None] * B
                for g, f in zip(groups, futures):
                    for i, r in zip(g, f.result()):
                        results[i] = r
            else:
                results = self._engine(spec).decode(emissions)
        return results

    def decode(self, log_probs: np.ndarray, lengths: np.ndarray | Sequence[int],
               charset: Charset) -> list[DecodedLine]:
        """Decode a batch ``[B, T, C]``; see :class:`htr_tf.decode.ctc.DecodedLine`.

        A character's span is its run in flashlight's best frame path and its confidence
        the largest probability over that run.
        """
        lp, ln = check_inputs(log_probs, lengths, charset)
        if lp.shape[0] == 0:
            return []
        found = self.decode_paths(lp, ln, charset)
        return [line_from_path(lp[b, : int(ln[b])], path, score, charset)
                for b, (path, score) in enumerate(found)]


def line_from_path(lp: np.ndarray, path: np.ndarray, score: float, charset: Charset) -> DecodedLine:
    """A DecodedLine from a frame path ``[T]`` over ``lp [T, C]``: runs collapsed, blanks dropped.

    Spaces at either end are dropped and a run of spaces counts once (as the recogniser's
    texts are normalised).
    """
    n = lp.shape[0]
    path = np.asarray(path, np.int64)[:n]
    blank_conf = float(np.exp(lp.max(-1)).mean()) if n else 0.0     # as ctc.py: sure it is blank
    if path.size == 0:
        return DecodedLine("", (), blank_conf, (), (), float(score), n)
    starts = np.flatnonzero(np.diff(path, prepend=-1) != 0)
    ends = np.append(starts[1:], path.size)
    probs = np.exp(lp[np.arange(path.size), path])
    run_conf = np.maximum.reduceat(probs, starts)
    space = charset.chars.index(" ") + 1 if " " in charset else -1
    ids: list[int] = []
    spans: list[tuple[int, int]] = []
    conf: list[float] = []
    for lab, s, e, c in zip(path[starts].tolist(), starts.tolist(), ends.tolist(), run_conf.tolist()):
        if lab == BLANK_INDEX or (lab == space and (not ids or ids[-1] == space)):
            continue
        ids.append(lab)
        spans.append((s, e))
        conf.append(c)
    while ids and ids[-1] == space:
        ids.pop()
        spans.pop()
        conf.pop()
    if not ids:
        return DecodedLine("", (), blank_conf, (), (), float(score), n)
    text = "".join(charset.chars[i - 1] for i in ids)
    return DecodedLine(text, tuple(ids), float(sum(conf) / len(conf)), tuple(conf), tuple(spans),
                       float(score), n)


def lines_from_ids(lp: np.ndarray, ln: np.ndarray, labels: Sequence[Sequence[int]],
                   scores: Sequence[float], charset: Charset) -> list[DecodedLine]:
    """DecodedLines for given labellings: spans and confidences from their Viterbi alignment."""
    aligned = forced_align_batch(lp, ln, [list(x) for x in labels])
    out = []
    for b, (ids, score) in enumerate(zip(labels, scores)):
        n = int(ln[b])
        line_lp = lp[b, :n]
        spans = aligned[b][0]
        text = "".join(charset.chars[i - 1] for i in ids)
        if not ids:
            out.append(DecodedLine("", (), float(np.exp(line_lp.max(-1)).mean()) if n else 0.0,
                                   (), (), float(score), n))
        elif not spans:   # more characters than frames: the text without spans
            out.append(DecodedLine(text, tuple(ids), 0.0, (), (), float(score), n))
        else:
            cc = tuple(float(np.exp(line_lp[s:e, c].max())) for (s, e), c in zip(spans, ids))
            out.append(DecodedLine(text, tuple(ids), float(sum(cc) / len(cc)), cc, tuple(spans),
                                   float(score), n))
    return out


class WordLMDecoder(_FlashlightDecoder):
    """``beam+lm``: lexicon beam search with a word n-gram (flashlight ``LexiconDecoder``).

    ``lm`` defaults to the bundled Brown word 4-gram and ``lexicon`` to the LM's
    ``.lexicon.tsv`` sidecar; ``lm_weight`` (alpha) scales the LM's log10 score,
    ``word_score`` (beta) is added per word, ``unk_score`` per out-of-lexicon word
    (``-inf`` closes the vocabulary).  ``workers > 1`` (or ``"auto"``) decodes batches in
    that many processes.  Defaults were tuned on synthetic posteriors
    (``benchmarks/bench_decoders.py``).
    """

    name = "beam+lm"
    kind = "word"

    def __init__(self, lm: str | os.PathLike | None = None, lexicon: str | os.PathLike | None = None,
                 beam_width: int = 50, beam_size_token: int | None = 8, beam_threshold: float = 15.0,
                 lm_weight: float = 1.0, word_score: float = 0.0, unk_score: float = -2.0,
                 sil_score: float = 0.0, workers: int | str = 1, language: str | None = None,
                 language_gate: bool = True):
        super().__init__(lm, lexicon, beam_width, beam_size_token, beam_threshold, lm_weight,
                         word_score, unk_score, sil_score, workers, language, language_gate)

    def _default_lm(self) -> Path:
        return BUNDLED_WORD_LM


class CharLMDecoder(_FlashlightDecoder):
    """``beam+charlm``: lexicon-free beam search with a character n-gram (flashlight ``LexiconFreeDecoder``).

    ``lm`` defaults to the bundled Brown char 6-gram; its tokens are the charset's
    characters with the word-boundary token for the space.  ``lm_weight`` scales the LM's
    log10 score, ``sil_score`` is added per word boundary.
    """

    name = "beam+charlm"
    kind = "char"

    def __init__(self, lm: str | os.PathLike | None = None, beam_width: int = 50,
                 beam_size_token: int | None = 8, beam_threshold: float = 15.0,
                 lm_weight: float = 2.0, sil_score: float = 0.0, workers: int | str = 1,
                 language: str | None = None, language_gate: bool = True):
        super().__init__(lm, None, beam_width, beam_size_token, beam_threshold, lm_weight,
                         0.0, float("-inf"), sil_score, workers, language, language_gate)

    def _default_lm(self) -> Path:
        return BUNDLED_CHAR_LM

    def options(self) -> dict[str, Any]:
        opts = super().options()
        for k in ("lexicon", "word_score", "unk_score"):
            opts.pop(k)
        return opts
