"""A small IAM directory in IAM's exact on-disk formats, made by the tests.

Four forms go through :class:`htr_tf.data.iam.IAMWriter`; a fifth (``d04-005``) is written
from hand-made snippets in the style of the real files (every ``<line>`` attribute IAM
has, ``last-modified``/``skew``/``status``/``version`` on ``<form>``, a ``sentence-start``
word, a word without components, ``lines.txt`` tokens with a space such as ``M Ps``, and
``words.txt`` rows without the component count its header documents), so the parser is
tested against the real format and not only against our own writer.  The texts are our
own: IAM's transcriptions may not be redistributed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from conftest import render_text_line
from htr_tf.data.iam import Cmp, Form, IAMWriter, Line, Word

PAGE_W, PAGE_H = 800, 480

#: form id -> (writer, split, [(text, segmentation)]).
WRITER_FORMS: dict[str, tuple[str, str | None, list[tuple[str, str]]]] = {
    "a01-000u": ("000", "train", [('"Yes," he said & left.', "ok"),
                                  ("He wouldn't go back.", "err"),
                                  ("Then all was quiet.", "ok")]),
    "b02-010": ("101", "validation1", [("Bring the boxes in.", "ok"),
                                       ("We met at noon (sharp).", "ok")]),
    "c03-021a": ("202", "test", [("Tea or caf\u00e9, then?", "ok"),
                                 ("It is 42 miles away;", "ok")]),
    "e05-100": ("404", None, [("Nobody listed this one.", "ok")]),
}

#: A line IAM's split files leave out although its form is in a split (as IAM does for 511 lines).
UNLISTED_LINE = "a01-000u-02"

RAW_FORM_ID = "d04-005"
RAW_XML = """<?xml version="1.0" encoding="ISO-8859-1"?>

<!DOCTYPE form SYSTEM 'http://www.iam.unibe.ch/~fki/iamdb/form-metadata.dtd'>

<form created="2002-01-14" height="480" id="d04-005" last-modified="2002-07-17" skew="287" status="final" version="3.0_beta" width="800" writer-id="303">
    <machine-printed-part>
        <machine-print-line text="&quot;We can&apos;t go,&quot; said Jones &amp; Co. Then"/>
        <machine-print-line text="the M Ps met at 9."/>
    </machine-printed-part>
    <handwritten-part>
        <line ass="-187" asx="0" asy="106" character-width="999" dss="-187" dsx="0" dsy="146" fd0="12129" fd1="2994" fd2="-339" filter-width="5" id="d04-005-00" lbs="-108" lbx="0" lby="138" segmentation="ok" slant="90000" stroke-width="7333" threshold="154" text="&quot;We can&apos;t go,&quot; said Jones &amp; Co." ubs="-347" ubx="0" uby="114">
            <word id="d04-005-00-00" sentence-start="yes" tag="&quot;" text="&quot;">
                <cmp x="60" y="110" width="10" height="20"/>
            </word>
            <word id="d04-005-00-01" tag="PP1AS" text="We">
                <cmp x="80" y="110" width="50" height="30"/>
            </word>
            <word id="d04-005-00-02" tag="MD*" text="can&apos;t">
                <cmp x="140" y="110" width="45" height="30"/>
                <cmp x="186" y="110" width="34" height="30"/>
            </word>
            <word id="d04-005-00-03" tag="VB" text="go">
                <cmp x="230" y="110" width="40" height="30"/>
            </word>
            <word id="d04-005-00-04" tag="," text=",">
                <cmp x="275" y="130" width="8" height="12"/>
            </word>
            <word id="d04-005-00-05" tag="&quot;" text="&quot;">
                <cmp x="290" y="110" width="10" height="20"/>
            </word>
            <word id="d04-005-00-06" tag="VBD" text="said">
                <cmp x="310" y="110" width="70" height="30"/>
            </word>
            <word id="d04-005-00-07" tag="NP" text="Jones">
                <cmp x="390" y="110" width="90" height="30"/>
            </word>
            <word id="d04-005-00-08" tag="CC" text="&amp;">
                <cmp x="490" y="110" width="25" height="30"/>
            </word>
            <word id="d04-005-00-09" tag="NNP" text="Co">
                <cmp x="525" y="110" width="45" height="30"/>
            </word>
            <word id="d04-005-00-10" tag="." text=".">
                <cmp x="575" y="132" width="6" height="6"/>
            </word>
        </line>
        <line ass="-187" asx="0" asy="176" character-width="999" dss="-187" dsx="0" dsy="216" fd0="12129" fd1="2994" fd2="-339" filter-width="5" id="d04-005-01" lbs="-108" lbx="0" lby="208" segmentation="err" slant="90000" stroke-width="7333" threshold="156" text="the M Ps met at 9." ubs="-347" ubx="0" uby="184">
            <word id="d04-005-01-00" tag="ATI" text="the">
                <cmp x="60" y="180" width="55" height="30"/>
            </word>
            <word id="d04-005-01-01" tag="NPTS" text="M Ps">
                <cmp x="125" y="180" width="70" height="30"/>
            </word>
            <word id="d04-005-01-02" tag="VBD" text="met">
                <cmp x="205" y="180" width="60" height="30"/>
            </word>
            <word id="d04-005-01-03" tag="IN" text="at">
                <cmp x="275" y="185" width="30" height="25"/>
            </word>
            <word id="d04-005-01-04" tag="CD" text="9">
                <cmp x="315" y="180" width="20" height="30"/>
            </word>
            <word id="d04-005-01-05" tag="." text="."/>
        </line>
    </handwritten-part>
</form>
"""

RAW_LINES_ROWS = [
    "d04-005-00 ok 154 12 56 104 530 42 \"|We|can't|go|,|\"|said|Jones|&|Co|.",
    "d04-005-01 err 156 5 56 174 300 42 the|M Ps|met|at|9|.",
]
RAW_WORDS_ROWS = [  # real words.txt rows carry no component count
    'd04-005-00-00 ok 154 60 110 10 20 " "',
    "d04-005-00-01 ok 154 80 110 50 30 PP1AS We",
    "d04-005-00-02 ok 154 140 110 80 30 MD* can't",
    "d04-005-01-01 err 156 125 180 70 30 NPTS M Ps",
    "d04-005-01-05 err 156 340 202 6 6 . .",
]
RAW_TEXTS = {"d04-005-00": '"We can\'t go," said Jones & Co.', "d04-005-01": "the M Ps met at 9."}


@dataclass
class IAMFixture:
    """What the fixture wrote and what ``prepare_iam`` should make of it (default options)."""

    root: Path
    texts: dict[str, str] = field(default_factory=dict)         # line id -> text
    split_of: dict[str, str] = field(default_factory=dict)      # line id -> split (listed ids)
    err_lines: set[str] = field(default_factory=set)
    forms: dict[str, str | None] = field(default_factory=dict)  # form id -> split
    unknown_char_lines: set[str] = field(default_factory=set)

    @property
    def line_ids(self) -> list[str]:
        return sorted(self.texts)

    def expected_lines(self) -> dict[str, list[str]]:
        """Split -> line ids written under ``unknown="skip"``, ``include_err=True``."""
        out: dict[str, list[str]] = {}
        for i, s in self.split_of.items():
            if i in self.texts and i not in self.unknown_char_lines:
                out.setdefault(s, []).append(i)
        return {s: sorted(v) for s, v in out.items()}


def tokens(text: str) -> list[str]:
    """IAM-style word tokens: punctuation is its own token, ``wouldn't`` stays whole."""
    return re.findall(r"[A-Za-z0-9\u00c0-\u017f']+|[^\sA-Za-z0-9]", text)


def draw_in_box(page: np.ndarray, text: str, box: tuple[int, int, int, int], seed: int = 0) -> None:
    """Draw ``text`` into an xyxy box of ``page`` (dark ink on white)."""
    import cv2

    x0, y0, x1, y1 = box
    img = render_text_line(text, height=max(8, y1 - y0), seed=seed)
    img = cv2.resize(img, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    page[y0:y1, x0:x1] = np.minimum(page[y0:y1, x0:x1], img)


def _writer_form(form_id: str, writer: str, lines: list[tuple[str, str]]) -> tuple[Form, np.ndarray]:
    """Lay the lines out on a page and describe them as IAM does (a cmp per word half)."""
    page = np.full((PAGE_H, PAGE_W), 255, np.uint8)
    out_lines = []
    for li, (text, seg) in enumerate(lines):
        y0, x = 100 + 60 * li, 60
        words = []
        for wi, tok in enumerate(tokens(text)):
            h = 34 if tok.isalnum() else 16
            w = max(8, 15 * len(tok))
            box = (x, y0 + (34 - h), x + w, y0 + 34)
            draw_in_box(page, tok, box, seed=wi)
            if w >= 40:  # two components, as a word's letters often are
                half = w // 2
                cmps = [Cmp(x, box[1], half, h), Cmp(x + half, box[1], w - half, h)]
            else:
                cmps = [Cmp(x, box[1], w, h)]
            tag = "NN" if tok[0].isalnum() else tok
            words.append(Word(f"{form_id}-{li:02d}-{wi:02d}", tok, cmps, tag=tag, segmentation=seg))
            x += w + (6 if not tok.isalnum() else 14)
        out_lines.append(Line(f"{form_id}-{li:02d}", text, words, segmentation=seg,
                              threshold=150 + li))
    form = Form(form_id, writer, PAGE_W, PAGE_H, [t for t, _ in lines], out_lines)
    return form, page


def _raw_page() -> np.ndarray:
    page = np.full((PAGE_H, PAGE_W), 255, np.uint8)
    for m in re.finditer(r'<word id="[^"]+"[^>]*text="([^"]*)">\s*((?:<cmp [^>]+/>\s*)+)', RAW_XML):
        text = m.group(1).replace("&quot;", '"').replace("&apos;", "'").replace("&amp;", "&")
        cmps = [tuple(int(v) for v in c) for c in
                re.findall(r'x="(\d+)" y="(\d+)" width="(\d+)" height="(\d+)"', m.group(2))]
        x0, y0 = min(c[0] for c in cmps), min(c[1] for c in cmps)
        x1, y1 = max(c[0] + c[2] for c in cmps), max(c[1] + c[3] for c in cmps)
        draw_in_box(page, text, (x0, y0, x1, y1))
    draw_in_box(page, ".", (340, 202, 346, 208))  # the word without components
    return page


def make_iam_fixture(root: str | Path, *, raw_form: bool = True) -> IAMFixture:
    """Write the IAM directory under ``root`` and describe it."""
    from htr_tf.fileio import write_png

    root = Path(root)
    fx = IAMFixture(root)
    with IAMWriter(root) as w:
        for form_id, (writer, split, lines) in WRITER_FORMS.items():
            form, page = _writer_form(form_id, writer, lines)
            w.add_form(form, page, split)
            fx.forms[form_id] = split
            for ln in form.lines:
                fx.texts[ln.id] = ln.text
                if split is not None and ln.id != UNLISTED_LINE:
                    fx.split_of[ln.id] = split
                if ln.err:
                    fx.err_lines.add(ln.id)
                if any(ord(c) > 127 for c in ln.text):
                    fx.unknown_char_lines.add(ln.id)
    train = root / "splits" / "trainset.txt"
    train.write_text("".join(i + "\n" for i in train.read_text().split() if i != UNLISTED_LINE))

    if raw_form:
        (root / "xml" / f"{RAW_FORM_ID}.xml").write_bytes(RAW_XML.encode("iso-8859-1"))
        write_png(root / "forms" / f"{RAW_FORM_ID}.png", _raw_page())
        with open(root / "ascii" / "lines.txt", "a", encoding="utf-8") as f:
            f.write("".join(r + "\n" for r in RAW_LINES_ROWS))
        with open(root / "ascii" / "words.txt", "a", encoding="utf-8") as f:
            f.write("".join(r + "\n" for r in RAW_WORDS_ROWS))
        with open(root / "splits" / "validationset2.txt", "a", encoding="utf-8") as f:
            f.write("".join(i + "\n" for i in RAW_TEXTS))
        fx.forms[RAW_FORM_ID] = "validation2"
        for i, t in RAW_TEXTS.items():
            fx.texts[i] = t
            fx.split_of[i] = "validation2"
        fx.err_lines.add("d04-005-01")
    return fx
