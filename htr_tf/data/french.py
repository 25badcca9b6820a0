"""French text for synthetic lines: a bundled word-frequency list and a line generator.

The real training data is French; the repository has no French corpus, so lines are
generated from the 40,000 most frequent French words of ``wordfreq`` (Robyn Speer et al.;
code Apache-2.0, word lists CC BY-SA 4.0), bundled as
``htr_tf/assets/text/french_words.tsv.gz`` (word, Zipf frequency; see the README there).
Words are drawn by frequency (flattened, so rarer words and their letters come up), with
French elision (``l'``, ``qu'``), capitals after a full stop and for names, a few words in
capitals (``É À Ç``...), punctuation, ``« »`` quotes, numbers, ``n°``/degrees and the
``œ æ`` words.  Regenerate the list with::

    python -m htr_tf.data.french --out htr_tf/assets/text/french_words.tsv.gz   # needs wordfreq
"""

from __future__ import annotations

import argparse
import gzip
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from htr_tf.errors import DataError

__all__ = ["FRENCH_WORDS", "FrenchWords", "load_french_words", "french_line", "write_french_words"]

FRENCH_WORDS = Path(__file__).resolve().parents[1] / "assets" / "text" / "french_words.tsv.gz"

#: Elided forms in the list ("l", "qu") -> their full form before a consonant.
_ELIDED = {"l": "le", "d": "de", "j": "je", "n": "ne", "s": "se", "c": "ce", "qu": "que", "m": "me",
           "t": "te", "jusqu": "jusque", "lorsqu": "lorsque", "puisqu": "puisque"}
_VOWELS = set("aeiouyhàâäéèêëîïôöûùüœæAEIOUYHÀÂÉÈÊÎÔŒÆ")
_AE_WORDS = ("ex æquo", "curriculum vitæ", "Lætitia", "cæcum", "et cætera", "nævus", "tænia")
_MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
           "octobre", "novembre", "décembre")


@dataclass(frozen=True)
class FrenchWords:
    words: tuple[str, ...]
    #: Drawing probabilities (frequency ** flatten, normalised).
    cdf: np.ndarray


@lru_cache(maxsize=4)
def load_french_words(path: str | None = None, flatten: float = 0.8) -> FrenchWords:
    """The bundled (or given) ``word<TAB>zipf`` list as drawing probabilities."""
    p = Path(path) if path else FRENCH_WORDS
    try:
        rows = gzip.decompress(p.read_bytes()).decode("utf-8").splitlines()
    except (OSError, EOFError) as e:
        raise DataError(f"{p}: cannot read the French word list: {e}") from None
    words, zipf = [], []
    for r in rows:
        if "\t" in r:
            w, z = r.split("\t", 1)
            words.append(w)
            zipf.append(float(z))
    if not words:
        raise DataError(f"{p}: no words")
    freq = np.power(10.0, np.asarray(zipf) * flatten)
    cdf = np.cumsum(freq / freq.sum())
    return FrenchWords(tuple(words), cdf)


def _cap(w: str) -> str:
    return w[:1].upper() + w[1:]


def french_line(rng: np.random.Generator, target_chars: int, allowed: set[str] | None = None,
                words: FrenchWords | None = None) -> str:
    """A line of about ``target_chars`` characters of French-like text (whole words)."""
    fw = words or load_french_words()
    out: list[str] = []
    length = 0
    sentence_start = bool(rng.random() < 0.5)
    quote_open = False
    while length < target_chars:
        r = rng.random()
        if r < 0.025:
            tok = str(rng.choice(["1", "2", "3", "4", "5", "6", "7", "8", "9", "12", "15", "20", "24", "30",
                                  "100", "1914", "1918", "1921", "1937", "1981", "2024", "3,5", "0,25"]))
            u = rng.random()
            tok = tok + (" " + str(rng.choice(_MONTHS)) if u < 0.3 else " %" if u < 0.4 else "%" if u < 0.45 else "")
        elif r < 0.03:
            tok = str(rng.choice(["n°", f"{int(rng.integers(1, 40))}°", "1er", "2e", "XIXe", "M.", "Mme", "[...]",
                                  "(sic)", "etc.", "c'est-à-dire", "peut-être", "aujourd'hui"]))
        elif r < 0.033:
            tok = str(rng.choice(_AE_WORDS))
        else:
            i = int(np.searchsorted(fw.cdf, rng.random() * fw.cdf[-1]))
            tok = fw.words[min(i, len(fw.words) - 1)]
        if out and out[-1].endswith("'"):
            if tok[0] not in _VOWELS:
                out[-1] = _ELIDED.get(out[-1][:-1].lower(), out[-1][:-1])
        if tok in _ELIDED:
            tok = tok + "'"
        if sentence_start:
            tok = _cap(tok)
            sentence_start = False
        elif rng.random() < 0.04:
            tok = _cap(tok)            # a name
        if rng.random() < 0.015:
            tok = tok.upper()          # a word in capitals: É À Ç È Ê Ô ...
        if not quote_open and rng.random() < 0.015:
            tok = "« " + tok if rng.random() < 0.6 else "«" + tok
            quote_open = True
        if out and out[-1].endswith("'"):
            out[-1] = out[-1] + tok
        else:
            out.append(tok)
        length = sum(len(t) for t in out) + len(out) - 1
        if tok.endswith("'"):
            continue
        p = rng.random()
        if quote_open and p < 0.08:
            out[-1] += " »" if rng.random() < 0.6 else "»"
            quote_open = False
        elif p < 0.06:
            out[-1] += ","
        elif p < 0.1:
            out[-1] += str(rng.choice([".", ".", ".", "?", "!", "...", " !", " ?"]))
            sentence_start = True
        elif p < 0.11:
            out[-1] += str(rng.choice([";", ":", " :", " ;"]))
    if out and out[-1].endswith("'"):
        out[-1] = _ELIDED.get(out[-1][:-1].lower(), out[-1][:-1])
    if quote_open and rng.random() < 0.7:
        out[-1] += "»"
    text = " ".join(out)
    text = unicodedata.normalize("NFC", text)
    if allowed is not None:
        text = " ".join(w for w in text.split(" ") if w and set(w) <= allowed)
    return text


def write_french_words(out: str | Path = FRENCH_WORDS, n: int = 40000, allowed: Sequence[str] | None = None) -> int:
    """Write the bundled list from ``wordfreq`` (``pip install wordfreq``); returns its length."""
    try:
        import wordfreq
    except ImportError:
        raise DataError("write_french_words needs wordfreq: pip install wordfreq") from None
    from htr_tf.fileio import atomic_write_bytes

    ok = set(allowed) if allowed is not None else None
    rows = []
    for w in wordfreq.top_n_list("fr", n):
        w = unicodedata.normalize("NFC", w)
        if not w or not all(c.isalpha() or c in "-'" for c in w):
            continue
        if ok is not None and not set(w) <= ok:
            continue
        rows.append(f"{w}\t{wordfreq.zipf_frequency(w, 'fr'):.2f}")
    atomic_write_bytes(out, gzip.compress(("\n".join(rows) + "\n").encode("utf-8"), mtime=0))
    return len(rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="write the bundled French word-frequency list from wordfreq")
    p.add_argument("--out", default=str(FRENCH_WORDS))
    p.add_argument("--n", type=int, default=40000)
    a = p.parse_args(argv)
    from htr_tf.data.synth_lines import synth_charset

    print(write_french_words(a.out, a.n, synth_charset().chars), "words")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
