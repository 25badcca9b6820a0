"""The IAM Handwriting Database on disk: a model, an exact writer, a parser and ``prepare_iam``.

The layout, as ``htr data iam-download`` leaves it and as :class:`IAMWriter` writes it::

    DIR/forms/a01-000u.png                      all three form archives together
    DIR/xml/a01-000u.xml                        one XML file per form
    DIR/ascii/{lines,words,forms}.txt           IAM's index files with their ``#`` headers
    DIR/lines/a01/a01-000u/a01-000u-00.png      line images
    DIR/words/a01/a01-000u/a01-000u-00-00.png   word images
    DIR/splits/{trainset,validationset1,validationset2,testset}.txt
                                                line ids of the large writer-independent
                                                text line recognition task, one per line

Formats mirrored from the real files:

* XML: ISO-8859-1, a ``DOCTYPE`` naming IAM's ``form-metadata.dtd``, four-space indentation,
  attributes in IAM's order (``<form created height id ... width writer-id>``,
  ``<line ... id ... segmentation ... threshold text ...>``, ``<word id tag text>``,
  ``<cmp x y width height/>``), ``& < > " '`` escaped as ``&amp; &lt; &gt; &quot; &apos;``.
  ``segmentation`` is ``ok`` or ``err`` in both the XML and ``lines.txt``.
* ``lines.txt``: ``a01-000u-00 ok 154 19 408 746 1661 89 We|can't|go,|said|Jones|&|Co.``
  (id, segmentation, graylevel, number of components, x y w h, word tokens joined by ``|``;
  a token may contain a space, e.g. ``M Ps``, so the text is everything after field 8).
* ``words.txt``: ``a01-000u-00-00 ok 154 408 768 27 51 PPSS We`` (its header documents a
  component count the data rows do not have; rows with one are read as well).
* ``forms.txt``: ``a01-000u 000 2 prt 7 5 52 36``.

Line texts are taken from the XML ``text`` attribute (proper spacing, entities unescaped);
``lines.txt`` gives the line box used for line crops.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np

from htr_tf.charset import DEFAULT_CHARSET, Charset
from htr_tf.errors import DataError
from htr_tf.fileio import atomic_write_bytes, atomic_write_text, decode_image, encode_png

log = logging.getLogger(__name__)

__all__ = [
    "Cmp", "Word", "Line", "Form", "form_to_xml", "parse_form_xml", "UnsafeXMLError",
    "IAMWriter", "LinesTxtRow", "WordsTxtRow", "FormsTxtRow", "parse_lines_txt", "parse_words_txt",
    "read_split_files", "line_image_path", "word_image_path", "prepare_iam",
    "SPLIT_FILES", "SPLITS",
]

#: Record split name -> IAM split file name (large writer-independent line task).
SPLIT_FILES: dict[str, str] = {
    "train": "trainset.txt",
    "validation1": "validationset1.txt",
    "validation2": "validationset2.txt",
    "test": "testset.txt",
}
SPLITS = tuple(SPLIT_FILES)

DOCTYPE = "<!DOCTYPE form SYSTEM 'http://www.iam.unibe.ch/~fki/iamdb/form-metadata.dtd'>"

# IAM's attribute order per element; attributes not listed go after these, in insertion order.
_FORM_ATTRS = ("created", "height", "id", "last-modified", "skew", "status", "version",
               "width", "writer-id")
_LINE_ATTRS = ("ass", "asx", "asy", "character-width", "dss", "dsx", "dsy", "fd0", "fd1", "fd2",
               "filter-width", "id", "lbs", "lbx", "lby", "segmentation", "slant",
               "stroke-width", "threshold", "text", "ubs", "ubx", "uby")
_WORD_ATTRS = ("id", "sentence-start", "tag", "text")

_ID_RE = re.compile(r"^[A-Za-z0-9]+-[A-Za-z0-9]+$")


# -- the model ------------------------------------------------------------------------------
@dataclass
class Cmp:
    """A connected component's box, as IAM's ``<cmp x y width height/>``."""

    x: int
    y: int
    width: int
    height: int

    def xyxy(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.x + self.width, self.y + self.height)


def _union(boxes: Iterable[tuple[int, int, int, int]], what: str) -> tuple[int, int, int, int]:
    b = list(boxes)
    if not b:
        raise ValueError(f"{what} has no components, so it has no box")
    return (min(v[0] for v in b), min(v[1] for v in b), max(v[2] for v in b), max(v[3] for v in b))


@dataclass
class Word:
    """A word of a handwritten line: its text, grammatical tag and component boxes."""

    id: str
    text: str
    cmps: list[Cmp]
    tag: str = "NN"
    segmentation: str = "ok"
    #: Other IAM attributes (``sentence-start``), kept verbatim for a faithful round trip.
    attrs: dict[str, str] = field(default_factory=dict)

    def box_xyxy(self) -> tuple[int, int, int, int]:
        """Union of the word's components (``ValueError`` when it has none)."""
        return _union((c.xyxy() for c in self.cmps), f"word {self.id}")


@dataclass
class Line:
    """A handwritten line: ``segmentation`` is ``ok`` or ``err`` (word segmentation failed)."""

    id: str
    text: str
    words: list[Word]
    segmentation: str = "ok"
    threshold: int = 160
    #: Other IAM attributes (``asx``, ``lby``, ``slant``, ...), kept verbatim.
    attrs: dict[str, str] = field(default_factory=dict)

    def box_xyxy(self) -> tuple[int, int, int, int]:
        """Union of all components of the line's words (``ValueError`` when there are none)."""
        return _union((c.xyxy() for w in self.words for c in w.cmps), f"line {self.id}")

    def num_components(self) -> int:
        return sum(len(w.cmps) for w in self.words)

    @property
    def err(self) -> bool:
        return self.segmentation != "ok"


@dataclass
class Form:
    """A scanned form: the printed prompt and the writer's handwritten lines."""

    id: str
    writer_id: str
    width: int
    height: int
    printed_lines: list[str]
    lines: list[Line]
    created: str = "2002-01-14"
    #: Other IAM attributes of ``<form>`` (``last-modified``, ``skew``, ``status``, ``version``).
    attrs: dict[str, str] = field(default_factory=dict)

    def handwritten_box_xyxy(self) -> tuple[int, int, int, int]:
        """Union of the handwritten lines' boxes: the paragraph box."""
        return _union((ln.box_xyxy() for ln in self.lines if ln.num_components()),
                      f"form {self.id}")

    def forms_txt_row(self) -> str:
        """This form's row of ``forms.txt`` (``a01-000u 000 2 prt 7 5 52 36``).

        IAM counts sentences from its corpus; here a sentence is a word token ``.``, ``!``
        or ``?`` (IAM tokenises final punctuation as its own word), at least one.
        """
        words = [w for ln in self.lines for w in ln.words]
        ok_lines = [ln for ln in self.lines if not ln.err]
        sentences = max(1, sum(w.text in (".", "!", "?") for w in words))
        seg = "all" if len(ok_lines) == len(self.lines) else "prt"
        ok_words = sum(len(ln.words) for ln in ok_lines)
        return (f"{self.id} {self.writer_id} {sentences} {seg} {len(self.lines)} "
                f"{len(ok_lines)} {len(words)} {ok_words}")


# -- XML ------------------------------------------------------------------------------------
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;",
            "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
_ESCAPE_RE = re.compile("[&<>\"'\n\r\t]")


def _attr(value: Any) -> str:
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], str(value))


def _attrs(pairs: dict[str, Any], order: Sequence[str]) -> str:
    keys = [k for k in order if k in pairs] + [k for k in pairs if k not in order]
    return " ".join(f'{k}="{_attr(pairs[k])}"' for k in keys)


def form_to_xml(form: Form) -> bytes:
    """IAM's XML for ``form`` (ISO-8859-1; characters outside Latin-1 as ``&#N;``)."""
    out = ['<?xml version="1.0" encoding="ISO-8859-1"?>', "", DOCTYPE, ""]
    fa = {**form.attrs, "created": form.created, "height": form.height, "id": form.id,
          "width": form.width, "writer-id": form.writer_id}
    out.append(f"<form {_attrs(fa, _FORM_ATTRS)}>")
    out.append("    <machine-printed-part>")
    for text in form.printed_lines:
        out.append(f'        <machine-print-line text="{_attr(text)}"/>')
    out.append("    </machine-printed-part>")
    out.append("    <handwritten-part>")
    for ln in form.lines:
        la = {**ln.attrs, "id": ln.id, "segmentation": ln.segmentation,
              "threshold": ln.threshold, "text": ln.text}
        if not ln.words:
            out.append(f"        <line {_attrs(la, _LINE_ATTRS)}/>")
            continue
        out.append(f"        <line {_attrs(la, _LINE_ATTRS)}>")
        for w in ln.words:
            wa = {**w.attrs, "id": w.id, "tag": w.tag, "text": w.text}
            if not w.cmps:
                out.append(f"            <word {_attrs(wa, _WORD_ATTRS)}/>")
                continue
            out.append(f"            <word {_attrs(wa, _WORD_ATTRS)}>")
            for c in w.cmps:
                out.append(f'                <cmp x="{int(c.x)}" y="{int(c.y)}" '
                           f'width="{int(c.width)}" height="{int(c.height)}"/>')
            out.append("            </word>")
        out.append("        </line>")
    out.append("    </handwritten-part>")
    out.append("</form>")
    return ("\n".join(out) + "\n").encode("iso-8859-1", "xmlcharrefreplace")


class UnsafeXMLError(DataError):
    """XML refused because it declares entities or external references (an XML bomb)."""


def _int(el: Any, key: str, name: str, default: int | None = None) -> int:
    v = el.get(key)
    if v is None:
        if default is not None:
            return default
        raise DataError(f"{name}: <{el.tag} id={el.get('id')!r}> has no {key!r} attribute")
    try:
        return int(v)
    except ValueError:
        raise DataError(f"{name}: <{el.tag} id={el.get('id')!r}> {key}={v!r} is not an integer") from None


def _req(el: Any, key: str, name: str) -> str:
    v = el.get(key)
    if v is None:
        raise DataError(f"{name}: <{el.tag}> has no {key!r} attribute")
    return v


def parse_form_xml(data: bytes, name: str) -> Form:
    """Parse one IAM form XML with defusedxml; :class:`DataError` naming ``name`` on bad input.

    Entity declarations (billion laughs, external entities) raise :class:`UnsafeXMLError`.
    """
    from xml.etree.ElementTree import ParseError

    import defusedxml.ElementTree as DET
    from defusedxml import DefusedXmlException

    if not data or not data.strip():
        raise DataError(f"{name}: XML file is empty")
    try:
        root = DET.fromstring(data)
    except DefusedXmlException as e:
        raise UnsafeXMLError(f"{name}: refused XML that declares entities or external "
                             f"references (possible XML bomb): {e}") from None
    except ParseError as e:
        raise DataError(f"{name}: malformed XML: {e}") from None
    if root.tag != "form":
        raise DataError(f"{name}: root element is <{root.tag}>, an IAM form XML has <form>")
    known = {"created", "height", "id", "width", "writer-id"}
    form = Form(id=_req(root, "id", name), writer_id=root.get("writer-id", ""),
                width=_int(root, "width", name), height=_int(root, "height", name),
                printed_lines=[], lines=[], created=root.get("created", ""),
                attrs={k: v for k, v in root.attrib.items() if k not in known})
    printed = root.find("machine-printed-part")
    if printed is not None:
        form.printed_lines = [el.get("text", "") for el in printed.findall("machine-print-line")]
    hand = root.find("handwritten-part")
    if hand is None:
        raise DataError(f"{name}: no <handwritten-part>")
    for lel in hand.findall("line"):
        line = Line(id=_req(lel, "id", name), text=lel.get("text", ""), words=[],
                    segmentation=lel.get("segmentation", "ok"),
                    threshold=_int(lel, "threshold", name, default=160),
                    attrs={k: v for k, v in lel.attrib.items()
                           if k not in ("id", "text", "segmentation", "threshold")})
        for wel in lel.findall("word"):
            cmps = [Cmp(_int(c, "x", name), _int(c, "y", name), _int(c, "width", name),
                        _int(c, "height", name)) for c in wel.findall("cmp")]
            line.words.append(Word(id=_req(wel, "id", name), text=wel.get("text", ""),
                                   cmps=cmps, tag=wel.get("tag", ""),
                                   attrs={k: v for k, v in wel.attrib.items()
                                          if k not in ("id", "text", "tag")}))
        form.lines.append(line)
    return form


# -- paths ----------------------------------------------------------------------------------
def form_id_of(item_id: str) -> str:
    """``a01-000u-00-01`` -> ``a01-000u``."""
    return "-".join(item_id.split("-")[:2])


def _nested(root: Path, kind: str, item_id: str) -> Path:
    prefix = item_id.split("-")[0]
    return root / kind / prefix / form_id_of(item_id) / f"{item_id}.png"


def line_image_path(root: str | os.PathLike, line_id: str) -> Path:
    """``DIR/lines/a01/a01-000u/a01-000u-00.png``."""
    return _nested(Path(root), "lines", line_id)


def word_image_path(root: str | os.PathLike, word_id: str) -> Path:
    """``DIR/words/a01/a01-000u/a01-000u-00-00.png``."""
    return _nested(Path(root), "words", word_id)


# -- ascii files ----------------------------------------------------------------------------
def _header(name: str, body: str) -> str:
    top = f"#--- {name} "
    return top + "-" * (78 - len(top)) + "#\n" + body


LINES_HEADER = _header("lines.txt", """#
# iam database line information
#
# format: a01-000u-00 ok 154 19 408 746 1663 91 We|can't|go,|said|Jones|&|Co.
#
#     a01-000u-00  -> line id for form a01-000u
#     ok              -> result of word segmentation
#                            ok: line is correctly segmented
#                            err: segmentation of line has one or more errors
#
#                        notice: if the line could not be properly segmented
#                                the transcription and extraction of the whole
#                                line should not be affected negatively
#
#     154             -> graylevel to binarize line
#     19              -> number of components for this line
#     408 746 1663 91 -> bounding box around this line in x,y,w,h format
#
#     We|can't|go,|said|Jones|&|Co.
#                     -> transcription for this line. word tokens are separated
#                        by the character |
#
""")

WORDS_HEADER = _header("words.txt", """#
# iam database word information
#
# format: a01-000u-00-00 ok 154 1 408 768 27 51 PPSS We
#
#     a01-000u-00-00  -> word id for line 00 in form a01-000u
#     ok              -> result of word segmentation
#                            ok: word was correctly
#                            er: segmentation of word can be bad
#
#     154             -> graylevel to binarize the line containing this word
#     1               -> number of components for this word
#     408 768 27 51   -> bounding box around this word in x,y,w,h format
#     PPSS            -> the grammatical tag for this word, see the
#                        file tagset.txt for an explanation
#     We              -> the transcription for this word
#
""")

FORMS_HEADER = _header("forms.txt", """#
# iam database form information
#
# format: a01-000u 000 2 prt 7 5 52 36
#
#     a01-000u  -> form id
#     000       -> writer id
#     2         -> number of sentences
#     prt       -> word segmentation
#                     prt: some lines correctly segmented
#                     all: all lines correctly segmented
#     7 5       -> 5 of 7 lines are correctly segmented into words
#     52 36     -> the form contains 52 words,
#                  36 are in lines which have been correctly segmented
#
""")


@dataclass
class LinesTxtRow:
    """A row of ``lines.txt``; ``box`` is xywh in page pixels."""

    id: str
    segmentation: str
    graylevel: int
    components: int
    box: tuple[int, int, int, int]
    tokens: list[str]

    def box_xyxy(self) -> tuple[int, int, int, int]:
        x, y, w, h = self.box
        return (x, y, x + w, y + h)

    def format(self) -> str:
        return (f"{self.id} {self.segmentation} {self.graylevel} {self.components} "
                f"{' '.join(str(v) for v in self.box)} {'|'.join(self.tokens)}")


@dataclass
class WordsTxtRow:
    """A row of ``words.txt``; ``box`` is xywh (``-1 -1 -1 -1`` where IAM has none)."""

    id: str
    segmentation: str
    graylevel: int
    box: tuple[int, int, int, int]
    tag: str
    text: str

    def format(self) -> str:
        return (f"{self.id} {self.segmentation} {self.graylevel} "
                f"{' '.join(str(v) for v in self.box)} {self.tag} {self.text}")


@dataclass
class FormsTxtRow:
    id: str
    writer_id: str
    rest: str

    def format(self) -> str:
        return f"{self.id} {self.writer_id} {self.rest}"


def _data_rows(path: Path) -> Iterable[tuple[int, str]]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        text = path.read_bytes().decode("iso-8859-1")
    for no, raw in enumerate(text.splitlines(), 1):
        if raw.strip() and not raw.startswith("#"):
            yield no, raw.rstrip("\r\n")


def parse_lines_txt(path: str | os.PathLike,
                    bad: list[str] | None = None) -> dict[str, LinesTxtRow]:
    """Read ``lines.txt``; malformed rows are reported into ``bad`` (``FILE:LINE``) or raise."""
    path = Path(path)
    out: dict[str, LinesTxtRow] = {}
    for no, raw in _data_rows(path):
        parts = raw.split(" ", 8)
        try:
            if len(parts) < 9 or parts[1] not in ("ok", "err"):
                raise ValueError
            out[parts[0]] = LinesTxtRow(parts[0], parts[1], int(parts[2]), int(parts[3]),
                                        (int(parts[4]), int(parts[5]), int(parts[6]), int(parts[7])),
                                        parts[8].split("|"))
        except ValueError:
            if bad is None:
                raise DataError(f"{path}:{no}: malformed lines.txt row {raw[:80]!r}") from None
            bad.append(f"{path}:{no}")
    return out


def parse_words_txt(path: str | os.PathLike,
                    bad: list[str] | None = None) -> dict[str, WordsTxtRow]:
    """Read ``words.txt`` (rows with or without the component count the header documents)."""
    path = Path(path)
    out: dict[str, WordsTxtRow] = {}
    for no, raw in _data_rows(path):
        parts = raw.split(" ")
        try:
            if len(parts) < 9 or parts[1] not in ("ok", "err", "er"):
                raise ValueError
            # A tag is never an integer: an integer in field 7 means a component count is there.
            has_count = len(parts) >= 10 and re.fullmatch(r"-?\d+", parts[7]) is not None
            o = 4 if has_count else 3
            box = (int(parts[o]), int(parts[o + 1]), int(parts[o + 2]), int(parts[o + 3]))
            out[parts[0]] = WordsTxtRow(parts[0], parts[1], int(parts[2]), box, parts[o + 4],
                                        " ".join(parts[o + 5:]))
        except ValueError:
            if bad is None:
                raise DataError(f"{path}:{no}: malformed words.txt row {raw[:80]!r}") from None
            bad.append(f"{path}:{no}")
    return out


def parse_forms_txt(path: str | os.PathLike) -> dict[str, FormsTxtRow]:
    out: dict[str, FormsTxtRow] = {}
    for _, raw in _data_rows(Path(path)):
        parts = raw.split(" ", 2)
        if len(parts) == 3:
            out[parts[0]] = FormsTxtRow(*parts)
    return out


def read_split_files(splits_dir: str | os.PathLike) -> dict[str, list[str]]:
    """Record split name -> line ids, EVERY id of each file (no header row is assumed).

    The original MXNet reader used ``pandas.read_csv``, which took each file's first id for
    a column name and silently dropped it.  Missing files give an empty list and a warning.
    """
    d = Path(splits_dir)
    out: dict[str, list[str]] = {}
    for split, fname in SPLIT_FILES.items():
        p = d / fname
        if not p.exists():
            log.warning("%s: split file missing; split %r is empty", p, split)
            out[split] = []
            continue
        ids = [s.strip() for s in p.read_text(encoding="utf-8", errors="replace").splitlines()]
        out[split] = [s for s in ids if s and not s.startswith("#")]
    return out


# -- the writer -----------------------------------------------------------------------------
def _xywh(b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return (b[0], b[1], b[2] - b[0], b[3] - b[1])


class IAMWriter:
    """Write a whole IAM directory (forms, XML, line and word crops, ascii files, splits).

    Rows already in ``DIR/ascii`` and ``DIR/splits`` are read back first, so a directory can
    be written in several sessions; re-adding a form replaces its rows.  One writer per
    directory at a time.

    >>> with IAMWriter("iam") as w:                                  # doctest: +SKIP
    ...     w.add_form(form, page, split="train")
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._lines: dict[str, LinesTxtRow] = {}
        self._words: dict[str, WordsTxtRow] = {}
        self._forms: dict[str, FormsTxtRow] = {}
        self._split_of: dict[str, str] = {}  # line id -> split
        ascii_dir = self.root / "ascii"
        if (ascii_dir / "lines.txt").exists():
            self._lines = parse_lines_txt(ascii_dir / "lines.txt")
        if (ascii_dir / "words.txt").exists():
            self._words = parse_words_txt(ascii_dir / "words.txt")
        if (ascii_dir / "forms.txt").exists():
            self._forms = parse_forms_txt(ascii_dir / "forms.txt")
        if (self.root / "splits").is_dir():
            for split, ids in read_split_files(self.root / "splits").items():
                for i in ids:
                    self._split_of[i] = split
        self._closed = False

    def __enter__(self) -> "IAMWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def add_form(self, form: Form, page: np.ndarray, split: str | None = None) -> None:
        """Write ``form``'s page, XML and crops, and remember its index rows and split.

        ``page`` is 2-D uint8 gray of ``form.height x form.width``; ``split`` is one of
        ``train``, ``validation1``, ``validation2``, ``test`` or None (in no split file).
        """
        from htr_tf.geometry import crop

        if self._closed:
            raise RuntimeError("IAMWriter is closed")
        page = np.asarray(page)
        if page.dtype != np.uint8 or page.ndim != 2:
            raise ValueError(f"form {form.id}: page must be 2-D uint8 gray, got {page.dtype} {page.shape}")
        if page.shape != (form.height, form.width):
            raise ValueError(f"form {form.id}: page is {page.shape[1]}x{page.shape[0]}, "
                             f"the form says {form.width}x{form.height}")
        if split is not None and split not in SPLIT_FILES:
            raise ValueError(f"unknown split {split!r}; valid: {list(SPLIT_FILES)} or None")
        if not _ID_RE.match(form.id):
            raise ValueError(f"form id {form.id!r} is not like 'a01-000u'")
        for ln in form.lines:
            if form_id_of(ln.id) != form.id or ln.id.count("-") != 2:
                raise ValueError(f"line id {ln.id!r} is not '{form.id}-NN'")
            if ln.segmentation not in ("ok", "err"):
                raise ValueError(f"line {ln.id}: segmentation must be 'ok' or 'err'")
            for w in ln.words:
                if not w.id.startswith(ln.id + "-"):
                    raise ValueError(f"word id {w.id!r} is not '{ln.id}-NN'")
                if " " in w.tag or not w.tag:
                    raise ValueError(f"word {w.id}: tag {w.tag!r} must be one non-empty token")

        # Drop the rows of an earlier version of this form.
        for d in (self._lines, self._words, self._split_of):
            for k in [k for k in d if form_id_of(k) == form.id]:
                del d[k]

        atomic_write_bytes(self.root / "forms" / f"{form.id}.png", encode_png(page))
        atomic_write_bytes(self.root / "xml" / f"{form.id}.xml", form_to_xml(form))
        for ln in form.lines:
            if ln.num_components():
                box = ln.box_xyxy()
                atomic_write_bytes(line_image_path(self.root, ln.id), encode_png(crop(page, box)))
            else:
                box = (0, 0, 0, 0)
            self._lines[ln.id] = LinesTxtRow(ln.id, ln.segmentation, int(ln.threshold),
                                             ln.num_components(), _xywh(box),
                                             [w.text for w in ln.words])
            for w in ln.words:
                if w.cmps:
                    wbox = w.box_xyxy()
                    atomic_write_bytes(word_image_path(self.root, w.id),
                                       encode_png(crop(page, wbox)))
                    xywh = _xywh(wbox)
                else:
                    xywh = (-1, -1, -1, -1)
                self._words[w.id] = WordsTxtRow(w.id, w.segmentation, int(ln.threshold), xywh,
                                                w.tag, w.text)
            if split is not None:
                self._split_of[ln.id] = split
        row = form.forms_txt_row().split(" ", 2)
        self._forms[form.id] = FormsTxtRow(*row)

    def close(self) -> None:
        """Write ``ascii/{lines,words,forms}.txt`` and the four split files (atomically)."""
        if self._closed:
            return
        a = self.root / "ascii"
        atomic_write_text(a / "lines.txt", LINES_HEADER + "".join(
            self._lines[k].format() + "\n" for k in sorted(self._lines)))
        atomic_write_text(a / "words.txt", WORDS_HEADER + "".join(
            self._words[k].format() + "\n" for k in sorted(self._words)))
        atomic_write_text(a / "forms.txt", FORMS_HEADER + "".join(
            self._forms[k].format() + "\n" for k in sorted(self._forms)))
        by_split: dict[str, list[str]] = defaultdict(list)
        for line_id, split in self._split_of.items():
            by_split[split].append(line_id)
        for split, fname in SPLIT_FILES.items():
            atomic_write_text(self.root / "splits" / fname,
                              "".join(i + "\n" for i in sorted(by_split.get(split, []))))
        self._closed = True


# -- prepare_iam ----------------------------------------------------------------------------
UnknownMode = Literal["skip", "drop", "replace", "error"]
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FORM_DIRS = ("forms", "formsA-D", "formsE-H", "formsI-Z")


def _gray8_png(data: bytes) -> bool:
    """True when ``data`` is a PNG whose IHDR says 8-bit grayscale (kept byte for byte)."""
    return len(data) > 26 and data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" \
        and data[24] == 8 and data[25] == 0


def _load_png(path: Path) -> tuple[bytes, np.ndarray]:
    """(8-bit gray PNG bytes, decoded array) for an image file; DataError naming it if bad."""
    data = path.read_bytes()
    img = decode_image(data, str(path))
    return (data if _gray8_png(data) else encode_png(img)), img


def _find_page(iam: Path, form_id: str) -> Path | None:
    for d in _FORM_DIRS:
        p = iam / d / f"{form_id}.png"
        if p.exists():
            return p
    return None


@dataclass
class _Page:
    path: Path | None
    png: bytes = b""
    image: np.ndarray | None = None
    error: str = ""  # skip reason when the page is unusable


class _Prep:
    """State of one ``prepare_iam`` run (kept out of the function to keep each step short)."""

    def __init__(self, iam: Path, charset: Charset, unknown: UnknownMode, include_err: bool):
        self.iam, self.charset, self.unknown, self.include_err = iam, charset, unknown, include_err
        self.bad_rows: dict[str, list[str]] = {"lines.txt": [], "words.txt": []}
        ascii_dir = iam / "ascii"
        self.lines_txt: dict[str, LinesTxtRow] = {}
        self.words_txt: dict[str, WordsTxtRow] = {}
        if (ascii_dir / "lines.txt").exists():
            self.lines_txt = parse_lines_txt(ascii_dir / "lines.txt", self.bad_rows["lines.txt"])
        else:
            log.warning("%s: missing; line boxes come from the XML components", ascii_dir / "lines.txt")
        if (ascii_dir / "words.txt").exists():
            self.words_txt = parse_words_txt(ascii_dir / "words.txt", self.bad_rows["words.txt"])
        for fname, rows in self.bad_rows.items():
            if rows:
                log.warning("%s: %d malformed row(s), first at %s", ascii_dir / fname, len(rows), rows[0])
        self.splits = read_split_files(iam / "splits")
        seen: dict[str, str] = {}
        self.conflicts: set[str] = set()
        for split, ids in self.splits.items():
            for i in ids:
                if i in seen and seen[i] != split:
                    self.conflicts.add(i)
                seen[i] = split
        self.split_of = seen
        xml_ids = {p.stem for p in (iam / "xml").glob("*.xml")}
        self.line_ids_by_form: dict[str, set[str]] = defaultdict(set)
        for i in list(self.lines_txt) + list(self.split_of):
            self.line_ids_by_form[form_id_of(i)].add(i)
        self.form_ids = sorted(xml_ids | set(self.line_ids_by_form))
        self.input_lines: set[str] = set(self.lines_txt) | set(self.split_of)

    # -- one form ---------------------------------------------------------------------------
    def form(self, w: Any, form_id: str) -> None:
        from htr_tf.data.records import FormExample
        from htr_tf.geometry import clip_boxes, union_box

        xml_path = self.iam / "xml" / f"{form_id}.xml"
        expected = self.line_ids_by_form.get(form_id, set())
        form = self._parse(xml_path)
        if isinstance(form, str):
            for i in sorted(expected):
                w.skip(f"line: {form}", i)
            w.skip(f"form: {form}", form_id)
            return
        xml_line_ids = {ln.id for ln in form.lines}
        self.input_lines |= xml_line_ids
        for i in sorted(expected - xml_line_ids):
            w.skip("line: not in its form's XML", i)
        page = self._page(form_id)

        boxes, ids, texts, errs = [], [], [], []
        wboxes, wtexts, wline = [], [], []
        for ln in form.lines:
            row = self.lines_txt.get(ln.id)
            err = ln.segmentation != "ok" or (row is not None and row.segmentation != "ok")
            box = self._line_box(ln, row)
            self._line(w, form, ln, row, err, box, page)
            if box is None:
                continue
            k = len(ids)
            boxes.append(box)
            ids.append(ln.id)
            texts.append(self.charset.normalize(ln.text))
            errs.append(err)
            for word in ln.words:
                wb = self._word_box(word)
                if wb is not None:
                    wboxes.append(wb)
                    wtexts.append(word.text)
                    wline.append(k)

        splits = {self.split_of[i] for i in xml_line_ids if i in self.split_of and i not in self.conflicts}
        reason = ""
        if not splits:
            reason = "no line in a split file"
        elif len(splits) > 1:
            reason = "lines in more than one split"
        elif page.error:
            reason = page.error
        elif not boxes:
            reason = "no line boxes"
        if reason:
            w.skip(f"form: {reason}", form_id)
            return
        assert page.image is not None
        h, wd = page.image.shape
        lb = clip_boxes(np.asarray(boxes, np.float32), wd, h)
        wb_arr = clip_boxes(np.asarray(wboxes, np.float32).reshape(-1, 4), wd, h)
        w.add_form(splits.pop(), FormExample(
            id=form_id, image_png=page.png, height=h, width=wd, paragraph_box=union_box(lb),
            line_boxes=lb, line_ids=ids, line_texts=texts, line_err=errs, word_boxes=wb_arr,
            word_texts=wtexts, word_line=wline, writer=form.writer_id, source="iam"))

    def _parse(self, xml_path: Path) -> Form | str:
        """The form, or the skip reason when its XML is missing, malformed or unsafe."""
        if not xml_path.exists():
            log.warning("%s: missing form XML; its lines are skipped", xml_path)
            return "missing form XML"
        try:
            form = parse_form_xml(xml_path.read_bytes(), str(xml_path))
        except UnsafeXMLError as e:
            log.warning("%s", e)
            return "XML refused as unsafe (entity declarations)"
        except DataError as e:
            log.warning("%s", e)
            return "malformed XML"
        if form.id != xml_path.stem:
            log.warning("%s: form id %r differs from the file name", xml_path, form.id)
            return "malformed XML"
        return form

    def _page(self, form_id: str) -> _Page:
        path = _find_page(self.iam, form_id)
        if path is None:
            log.warning("%s: missing form page image", self.iam / "forms" / f"{form_id}.png")
            return _Page(None, error="missing page image")
        try:
            png, img = _load_png(path)
        except DataError as e:
            log.warning("%s", e)
            return _Page(path, error="corrupt or truncated page image")
        return _Page(path, png, img)

    @staticmethod
    def _line_box(ln: Line, row: LinesTxtRow | None) -> tuple[int, int, int, int] | None:
        if row is not None and row.box[2] > 0 and row.box[3] > 0:
            return row.box_xyxy()
        if ln.num_components():
            return ln.box_xyxy()
        return None

    def _word_box(self, word: Word) -> tuple[int, int, int, int] | None:
        if word.cmps:
            return word.box_xyxy()
        row = self.words_txt.get(word.id)
        if row is not None and row.box[2] > 0 and row.box[3] > 0:
            x, y, w, h = row.box
            return (x, y, x + w, y + h)
        return None

    def _line(self, w: Any, form: Form, ln: Line, row: LinesTxtRow | None, err: bool,
              box: tuple[int, int, int, int] | None, page: _Page) -> None:
        """Write one line record, or account for it with a reason."""
        from htr_tf.data.records import LineExample
        from htr_tf.geometry import crop

        if ln.id in self.conflicts:
            return w.skip("line: listed in more than one split file", ln.id)
        split = self.split_of.get(ln.id)
        if split is None:
            return w.skip("line: in no split file", ln.id)
        if err and not self.include_err:
            return w.skip("line: segmentation err (excluded)", ln.id)
        if not self.charset.normalize(ln.text):
            return w.skip("line: empty text", ln.id)
        unknown = self.charset.unknown(ln.text)
        if unknown:
            w.unknown_chars.update(unknown)
            if self.unknown == "skip":
                return w.skip("line: characters outside the charset", ln.id)
            if self.unknown == "error":
                chars = " ".join(f"{c!r}" for c in sorted(unknown))
                raise DataError(f"{self.iam / 'xml' / (form.id + '.xml')}: line {ln.id} has "
                                f"characters outside the charset: {chars} (use --unknown skip, "
                                f"drop or replace)")
        ids = self.charset.encode(ln.text, "error" if self.unknown in ("skip", "error") else self.unknown)
        if not ids:
            return w.skip("line: empty text", ln.id)
        path = line_image_path(self.iam, ln.id)
        if path.exists():
            try:
                png, img = _load_png(path)
            except DataError as e:
                log.warning("%s", e)
                return w.skip("line: corrupt or truncated line image", ln.id)
        elif page.image is None:
            return w.skip(f"line: no line image and {page.error}", ln.id)
        elif box is None:
            return w.skip("line: no line image and no line box", ln.id)
        else:
            img = crop(page.image, box)
            png = encode_png(img)
        w.add_line(split, LineExample(
            id=ln.id, image_png=png, height=int(img.shape[0]), width=int(img.shape[1]),
            text=self.charset.decode(ids), ids=ids, form_id=form.id, writer=form.writer_id,
            source="iam", err=err))


def prepare_iam(iam_dir: str | os.PathLike, out: str | os.PathLike, per_shard: int = 2000,
                unknown: UnknownMode = "skip", include_err: bool = True, progress: bool = True,
                charset: Charset | None = None) -> dict:
    """Convert an IAM directory into form and line TFRecords; returns the written manifest.

    Splits are the large writer-independent line task's (``train``, ``validation1``,
    ``validation2``, ``test``); a form goes to the split of its lines.  Every input line
    (in the XML, ``lines.txt`` or a split file) is written or skipped with a counted reason
    (``line: ...`` in the manifest's ``skipped``; forms ``form: ...``; index rows
    ``index: ...``), and ``info.input_lines`` / ``info.input_forms`` give the totals.
    ``unknown`` says what a line with characters outside the charset becomes: ``skip`` it,
    ``drop`` or ``replace`` the characters, or ``error``; they are counted either way.
    ``include_err=False`` leaves out lines whose word segmentation is ``err`` (form records
    keep them, flagged).  The set is written atomically: an interrupted run leaves the
    previous set untouched and a re-run starts clean.
    """
    import json

    from tqdm import tqdm

    from htr_tf.data.records import MANIFEST, RecordSetWriter

    iam = Path(iam_dir)
    if not iam.is_dir():
        raise DataError(f"{iam}: IAM directory not found")
    if not (iam / "xml").is_dir():
        raise DataError(f"{iam}: no xml/ directory; is this an IAM directory "
                        f"(`htr data iam-download`)?")
    if not (iam / "splits").is_dir():
        raise DataError(f"{iam}: no splits/ directory with {', '.join(SPLIT_FILES.values())} "
                        f"(the large writer-independent text line recognition task)")
    if unknown not in ("skip", "drop", "replace", "error"):
        raise DataError(f"unknown-character policy {unknown!r}; valid: skip, drop, replace, error")
    if per_shard < 1:
        raise DataError(f"per_shard must be at least 1, got {per_shard}")
    charset = charset or DEFAULT_CHARSET
    prep = _Prep(iam, charset, unknown, include_err)
    info = {"iam_dir": str(iam.resolve()), "unknown": unknown, "include_err": include_err,
            "split_ids": {s: len(v) for s, v in prep.splits.items()}}
    with RecordSetWriter(out, source="iam", charset=charset, per_shard=per_shard, info=info) as w:
        for fname, rows in prep.bad_rows.items():
            for item in rows:
                w.skip(f"index: malformed {fname} row", item)
        for form_id in tqdm(prep.form_ids, desc="IAM forms", unit="form", disable=not progress):
            prep.form(w, form_id)
        info["input_lines"] = len(prep.input_lines)
        info["input_forms"] = len(prep.form_ids)
        w.info = info
    return json.loads((Path(out) / MANIFEST).read_text(encoding="utf-8"))
