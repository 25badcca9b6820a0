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
import json
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

from htr_tf.charset import DEFAULT_CHARSET, Charset
from htr_tf.decode.kneser_ney import (_SPECIAL, BOS, EOS, UNK, NgramCounts, estimate_kneser_ney, prune_thresholds,
                                      write_arpa)
from htr_tf.errors import ConfigError, DataError, ModelError
from htr_tf.fileio import atomic_path, atomic_write_text

__all__ = [
    "LMKind", "BOS", "EOS", "UNK", "BUNDLED_LM_DIR", "BUNDLED_WORD_LM", "HELDOUT_EVERY",
    "boundary_token", "tokenize", "read_text", "split_heldout", "NgramCounts",
    "estimate_kneser_ney", "write_arpa", "build_lm", "find_kenlm_tools", "lm_sidecars",
    "read_meta", "read_lexicon", "write_lexicon", "check_lm_file", "load_kenlm",
    "check_charset", "arpa_vocabulary",
]

LMKind = Literal["word", "char"]
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
             lexicon: bool = True, progress: bool = False, language: str | None = None) -> dict[str, Any]:
    """Build an ``order``-gram LM of ``kind`` into ``out`` (``.arpa``, ``.arpa.gz`` or ``.bin``).

    The text is ``lines`` when given, else the files ``text`` (else the bundled Brown
    extract); ``heldout_every`` leaves every k-th line out (:func:`split_heldout`).
    ``estimator="auto"`` uses ``lmplz`` when on ``PATH``, else :func:`estimate_kneser_ney`;
    a ``.bin`` output needs ``build_binary``.  Writes the metadata sidecar (with ``language``,
    the text's, when given: :mod:`htr_tf.decode.language`) and (unless ``lexicon=False``) the
    lexicon sidecar, and returns the metadata.
    """
    _check_kind(kind)
    from htr_tf.decode.language import FUNCTION_WORDS

    if language is not None and language not in FUNCTION_WORDS:
        raise ConfigError(f"language must be one of {', '.join(FUNCTION_WORDS)} (or none), got {language!r}")
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
    thresholds = prune_thresholds(prune, order)
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
            est = "htr_tf.decode.kneser_ney.estimate_kneser_ney"
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
        "format_version": META_FORMAT_VERSION, "kind": kind, "language": language, "order": order,
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

    With metadata (an LM built here) the LM's kind must be ``kind`` and every character of
    its charset must be in ``charset`` (the model may know more).  Without it, a char LM must contain the
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
        # A model may know more characters than the LM (the Latin charset with an LM built on
        # IAM's): words holding them are out of the word LM's vocabulary, and the char LM scores
        # them as <unk>.  An LM character the model cannot emit means the two were not made
        # for each other.
        extra = "".join(sorted(set(lm_cs.chars) - set(charset.chars)))
        if extra:
            raise ModelError(f"{path}: charset mismatch between LM and model: the LM's characters {extra!r} "
                             f"are not in the model's charset (rebuild it with `htr lm build --charset MODEL`)")
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
