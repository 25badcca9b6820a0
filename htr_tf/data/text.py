"""English sentences for synthetic pages and language models, from the Brown corpus.

The Brown corpus (nltk_data's ``brown.zip``: ``word/TAG`` tokens, one sentence a line,
redistribution permitted) is detokenised into plain sentences and restricted to the
recogniser's charset.  A derived extract ships with the package
(``htr_tf/assets/text/brown_sentences.txt.gz``, one sentence a line in corpus order) so
synthesis works with no data download; :func:`write_extract` regenerates it::

    python -m htr_tf.data.text /path/to/brown.zip

Sentences stay in corpus order: consecutive list items are consecutive sentences of one
text, which is what an IAM prompt is.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import zipfile
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from htr_tf.charset import DEFAULT_CHARSET, Charset
from htr_tf.errors import DataError
from htr_tf.fileio import atomic_write_bytes

__all__ = ["BUNDLED_TEXT", "load_sentences", "brown_sentences", "detokenize", "clean_sentences",
           "write_extract"]

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "text"
#: The bundled extract: gzip'd UTF-8, one sentence a line, in corpus order.
BUNDLED_TEXT = ASSETS / "brown_sentences.txt.gz"
#: Budget of the bundled extract (compressed bytes).
DEFAULT_MAX_BYTES = 1_450_000

_OPEN_DOUBLE, _CLOSE_DOUBLE = "``", "''"
# Tokens glued to the token before them / after them.
_NO_SPACE_BEFORE = {".", ",", ";", ":", "?", "!", ")", "]", "}", "%", "'", _CLOSE_DOUBLE,
                    "n't", "'s", "'re", "'ve", "'ll", "'d", "'m"}
_NO_SPACE_AFTER = {"(", "[", "{", "$", _OPEN_DOUBLE, "`"}


def detokenize(tokens: Sequence[str]) -> str:
    """Join Penn/Brown-style tokens into plain text.

    Brown's double quotes (two backquotes, two apostrophes) become ``"``, a single backquote
    becomes ``'``, ``--`` becomes a spaced hyphen,
    punctuation is glued to its neighbour, a period or comma after a closing double quote
    moves inside it (American style, as the printed Brown texts), a sentence-final period
    after an abbreviation is dropped, and doubled ``;``, ``,``, ``:``, ``?`` (a corpus
    quirk) are merged.

    >>> detokenize(["``", "Only", "a", "handful", "''", ",", "the", "jury", "said", "."])
    '"Only a handful," the jury said.'
    >>> detokenize(["It", "cost", "$", "5", "(", "or", "less", ")", "--", "so", "he", "said", "."])
    'It cost $5 (or less) - so he said.'
    >>> detokenize(["He", "said", "``", "no", "''", ".", "So", ";", ";"])
    'He said "no." So;'
    >>> detokenize(["Ask", "James", "Crumlish", "Jr.", "."])
    'Ask James Crumlish Jr.'
    """
    toks: list[str] = []
    for tok in tokens:
        if toks and tok in (".", ",") and toks[-1] == _CLOSE_DOUBLE:
            toks.insert(len(toks) - 1, tok)
        elif toks and tok == "." and toks[-1].endswith(".") and toks[-1] not in (".", "..."):
            continue  # "Jr." ends the sentence: no second period
        elif not (toks and tok in (";", ",", ":", "?") and toks[-1] == tok):
            toks.append(tok)
    out: list[str] = []
    glue_next = True  # no space before the first token
    for tok in toks:
        text = tok
        if tok == _OPEN_DOUBLE:
            text = '"'
        elif tok == _CLOSE_DOUBLE:
            text = '"'
        elif tok == "`":
            text = "'"
        elif tok == "--":
            text = "-"
        if not (glue_next or tok in _NO_SPACE_BEFORE) and out:
            out.append(" ")
        out.append(text)
        glue_next = tok in _NO_SPACE_AFTER
    return "".join(out).strip()


def _brown_tokens(line: str) -> list[str]:
    """Words of one tagged Brown line (``word/TAG`` tokens; the word may contain ``/``)."""
    words = []
    for t in line.split():
        w, sep, _tag = t.rpartition("/")
        words.append(w if sep else t)
    return words


def brown_sentences(zip_path: str | os.PathLike) -> Iterator[str]:
    """Every sentence of nltk's ``brown.zip`` detokenised, in corpus order (no filtering).

    A corpus line ending in ``;``, ``:`` or ``,`` is a clause, not a sentence: it is joined
    with the lines after it (within one text) until a sentence end.
    """
    zip_path = Path(zip_path)
    try:
        z = zipfile.ZipFile(zip_path)
    except (OSError, zipfile.BadZipFile) as e:
        raise DataError(f"{zip_path}: not a readable zip file: {e}") from None
    with z:
        names = sorted(n for n in z.namelist()
                       if "/" in n and len(n.rsplit("/", 1)[1]) == 4 and n.rsplit("/", 1)[1][0] == "c")
        if not names:
            raise DataError(f"{zip_path}: no Brown corpus files (brown/ca01 ...) inside")
        for name in names:
            try:
                data = z.read(name).decode("utf-8")
            except (UnicodeDecodeError, zipfile.BadZipFile) as e:
                raise DataError(f"{zip_path}:{name}: cannot read: {e}") from None
            pending: list[str] = []
            for line in data.splitlines():
                if not line.strip():
                    continue
                pending += _brown_tokens(line)
                if pending[-1] not in (";", ":", ","):
                    yield detokenize(pending)
                    pending = []
            if pending:
                yield detokenize(pending)


def clean_sentences(sentences: Iterable[str], charset: Charset = DEFAULT_CHARSET,
                    min_words: int = 3, max_words: int = 60) -> Iterator[str]:
    """Normalised sentences whose every character is in ``charset``, within a word range.

    Sentences with formula placeholders (``**``) or braces are dropped too.
    """
    allowed = frozenset(charset.chars)
    for s in sentences:
        # Fast path: text already inside the charset only needs its spaces collapsed.
        s = " ".join(s.split()) if allowed.issuperset(s) else charset.normalize(s)
        if not s or "**" in s or not allowed.issuperset(s):
            continue
        n = len(s.split())
        if min_words <= n <= max_words:
            yield s


def _read_lines(data: bytes, name: str) -> list[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{name}: not UTF-8 text: {e}") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def load_sentences(path: str | os.PathLike | None = None, charset: Charset = DEFAULT_CHARSET) -> list[str]:
    """Sentences for synthesis and LMs: the bundled extract, or a ``.txt``, ``.txt.gz`` or ``brown.zip``.

    Text files hold one sentence (or paragraph) a line; every line is normalised and lines
    with characters outside ``charset`` are left out, so the result is always encodable.
    """
    path = Path(path) if path is not None else BUNDLED_TEXT
    if not path.exists():
        hint = " (the bundled extract is missing: run `python -m htr_tf.data.text brown.zip`)" \
            if path == BUNDLED_TEXT else ""
        raise DataError(f"{path}: no such file{hint}")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a .txt, .txt.gz or brown.zip")
    if path.suffix == ".zip":
        sentences = list(clean_sentences(brown_sentences(path), charset))
    else:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError) as e:
                raise DataError(f"{path}: corrupt gzip file: {e}") from None
        sentences = list(clean_sentences(_read_lines(raw, str(path)), charset, min_words=1,
                                         max_words=10**9))
    if not sentences:
        raise DataError(f"{path}: no usable sentences (every line empty or outside the charset)")
    return sentences


def write_extract(brown_zip: str | os.PathLike, out: str | os.PathLike = BUNDLED_TEXT,
                  max_bytes: int = DEFAULT_MAX_BYTES, charset: Charset = DEFAULT_CHARSET) -> dict:
    """Regenerate the bundled extract from ``brown.zip``; returns counts.

    Cleaned sentences are kept in corpus order; when the gzip'd text exceeds ``max_bytes``
    an evenly spread fraction of them is kept (every genre keeps its share), the largest
    fraction, in steps of 1 %, that fits.  Deterministic: gzip's header time is fixed at 0.
    """
    sentences = list(clean_sentences(brown_sentences(brown_zip), charset))

    def pack(items: list[str]) -> bytes:
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as g:
            g.write(("\n".join(items) + "\n").encode("utf-8"))
        return buf.getvalue()

    def spread(fraction: float) -> list[str]:
        # Bresenham: keep sentence i when floor((i + 1) * f) > floor(i * f).
        return [x for i, x in enumerate(sentences) if int((i + 1) * fraction) > int(i * fraction)]

    percent, kept, data = 100, sentences, pack(sentences)
    if len(data) > max_bytes:
        percent = min(99, int(100 * max_bytes / len(data)) + 2)
    while len(data) > max_bytes:
        if percent < 1:
            raise DataError(f"cannot fit the extract in {max_bytes} bytes")
        kept = spread(percent / 100)
        data = pack(kept)
        if len(data) > max_bytes:
            percent -= 1
    atomic_write_bytes(out, data)
    os.chmod(out, 0o644)  # a package asset: readable by all (atomic writes start as 0600)
    return {"sentences": len(kept), "cleaned": len(sentences), "percent_kept": percent,
            "bytes": len(data), "words": sum(len(x.split()) for x in kept)}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m htr_tf.data.text BROWN_ZIP [--out FILE]``: regenerate the bundled extract."""
    p = argparse.ArgumentParser(prog="python -m htr_tf.data.text", description=main.__doc__)
    p.add_argument("brown_zip")
    p.add_argument("--out", default=str(BUNDLED_TEXT))
    p.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    a = p.parse_args(argv)
    print(write_extract(a.brown_zip, a.out, a.max_bytes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
