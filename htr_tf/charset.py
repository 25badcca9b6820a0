"""The alphabet of the recogniser and the text <-> id mapping.

One definition, saved inside every checkpoint and export, so training, serving, TFLite
and the gRPC client can never disagree.  CTC's blank is id ``BLANK_INDEX`` (0); the
characters take ids ``1..len(chars)``.  Unknown characters are handled by an explicit
policy and are counted, never silently lost.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Literal, Sequence

from htr_tf.errors import DataError

#: CTC blank id.  Label tensors are right-padded with it too: it never occurs inside a
#: real label, so a label's length is its count of non-zero ids.
BLANK_INDEX = 0

#: The original MXNet system's alphabet (79 symbols; with the CTC blank, 80 classes).
IAM_CHARACTERS = " !\"#&'()*+,-./0123456789:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

#: IAM's alphabet plus what real Latin-script text (French, Spanish, German) needs: accented
#: letters, ç, œ, æ and their capitals, and ``[ ] _ % °``.  Chosen from the character
#: inventory of the real training pages (``../shared/data/real-train``: 8,381 lines; é 6,603,
#: à 1,455, è 752, ê 453, _ 389, ç 292, É 198, [ ] 123, ...), completed to the full French
#: set.  IAM's ids are unchanged (the new characters come after them), so a model trained on
#: IAM's alphabet can be fine-tuned on this one.
LATIN_CHARACTERS = IAM_CHARACTERS + "[]_%\u00b0" + (
    "\u00e0\u00e1\u00e2\u00e4\u00e6\u00e7\u00e9\u00e8\u00ea\u00eb\u00ec\u00ed\u00ee\u00ef\u00f1\u00f3\u00f4\u00f6\u0153\u00f9\u00fa\u00fb\u00fc\u00ff"
    "\u00c0\u00c1\u00c2\u00c4\u00c6\u00c7\u00c8\u00c9\u00ca\u00cb\u00cd\u00ce\u00cf\u00d1\u00d3\u00d4\u00d6\u0152\u00d9\u00da\u00db\u00dc\u0178")

#: Typographic variants folded onto the alphabet before encoding.
DEFAULT_SUBSTITUTIONS: dict[str, str] = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u2032": "'", "`": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
    "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u2010": "-", "\u2011": "-",
    "\u00ab": '"', "\u00bb": '"', "\u2026": "...", "\u00a0": " ", "\t": " ", "\u017f": "s", "\u00a3": "L",
}

UnknownPolicy = Literal["error", "drop", "replace"]


class UnknownCharacterError(DataError):
    """Text contains characters outside the charset under the ``error`` policy."""


@dataclass(frozen=True)
class Charset:
    """An ordered set of characters; id 0 is the CTC blank.

    >>> cs = Charset()
    >>> cs.decode(cs.encode("Hello"))
    'Hello'
    >>> cs.num_classes
    80
    """

    chars: str = IAM_CHARACTERS
    substitutions: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SUBSTITUTIONS))
    replacement: str = "#"

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars):
            dup = [c for c, n in Counter(self.chars).items() if n > 1]
            raise ValueError(f"charset has duplicate characters: {dup!r}")
        if not self.chars:
            raise ValueError("charset is empty")
        if self.replacement and self.replacement not in self.chars:
            raise ValueError(f"replacement character {self.replacement!r} is not in the charset")
        object.__setattr__(self, "_index", {c: i + 1 for i, c in enumerate(self.chars)})

    # -- sizes ---------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Output classes of the recogniser: the characters plus the CTC blank."""
        return len(self.chars) + 1

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, ch: str) -> bool:
        return ch in self._index  # type: ignore[attr-defined]

    # -- text handling ---------------------------------------------------------------
    def normalize(self, text: str) -> str:
        """NFC-normalise, fold typographic variants and collapse runs of spaces."""
        text = unicodedata.normalize("NFC", text)
        if self.substitutions:
            text = "".join(self.substitutions.get(c, c) if c not in self else c for c in text)
        return " ".join(text.split())

    def unknown(self, text: str) -> Counter:
        """Characters of ``text`` (after normalisation) that are not in the charset, counted."""
        return Counter(c for c in self.normalize(text) if c not in self)

    def encode(self, text: str, policy: UnknownPolicy = "error") -> list[int]:
        """Text to ids (1-based; 0 is blank).

        ``policy`` says what an unknown character becomes: ``error`` raises
        :class:`UnknownCharacterError`, ``drop`` removes it, ``replace`` maps it to
        ``replacement``.  Use :meth:`unknown` to count them first.
        """
        index = self._index  # type: ignore[attr-defined]
        out: list[int] = []
        for c in self.normalize(text):
            i = index.get(c)
            if i is None:
                if policy == "error":
                    raise UnknownCharacterError(f"character {c!r} (U+{ord(c):04X}) is not in the charset")
                if policy == "replace":
                    out.append(index[self.replacement])
                continue
            out.append(i)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Ids to text; blanks and padding are skipped (no CTC collapsing here)."""
        chars = self.chars
        return "".join(chars[i - 1] for i in ids if 0 < i <= len(chars))

    def ctc_collapse(self, path: Sequence[int]) -> list[int]:
        """Best-path CTC rule: merge repeats, then drop blanks."""
        out, prev = [], None
        for i in path:
            i = int(i)
            if i != prev and i != BLANK_INDEX:
                out.append(i)
            prev = i
        return out

    # -- serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"chars": self.chars, "substitutions": dict(self.substitutions),
                "replacement": self.replacement, "blank_index": BLANK_INDEX}

    @classmethod
    def from_dict(cls, d: dict) -> "Charset":
        if d.get("blank_index", BLANK_INDEX) != BLANK_INDEX:
            raise ValueError(f"unsupported blank index {d['blank_index']} (this version uses {BLANK_INDEX})")
        return cls(chars=d["chars"], substitutions=dict(d.get("substitutions", {})),
                   replacement=d.get("replacement", "#"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> "Charset":
        return cls.from_dict(json.loads(s))

    def extended(self, extra: str) -> "Charset":
        """A new charset with ``extra`` characters appended (ids of existing ones unchanged)."""
        add = "".join(dict.fromkeys(c for c in extra if c not in self))
        return Charset(self.chars + add, dict(self.substitutions), self.replacement)


DEFAULT_CHARSET = Charset()

#: Names accepted wherever a charset is chosen (``--charset iam|latin|FILE``).
NAMED_CHARSETS: dict[str, str] = {"iam": IAM_CHARACTERS, "latin": LATIN_CHARACTERS}


def load_charset(spec: str) -> Charset:
    """A charset by name (``iam``, ``latin``) or from a file: a ``.json`` written by
    :meth:`Charset.to_json`, or a UTF-8 text file whose characters (newlines ignored) are the
    alphabet in id order.

    >>> load_charset("latin").num_classes - load_charset("iam").num_classes
    52
    """
    import os

    if spec in NAMED_CHARSETS:
        return Charset(NAMED_CHARSETS[spec])
    if not os.path.isfile(spec):
        raise DataError(f"charset {spec!r}: not a name ({', '.join(NAMED_CHARSETS)}) and no such file")
    with open(spec, encoding="utf-8") as f:
        text = f.read()
    try:
        if spec.endswith(".json"):
            return Charset.from_json(text)
        chars = "".join(dict.fromkeys(c for c in text if c not in "\r\n"))
        return Charset(chars, replacement="#" if "#" in chars else "")
    except (ValueError, KeyError) as e:
        raise DataError(f"charset file {spec}: {e}") from None
