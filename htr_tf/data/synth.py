"""Synthetic handwritten forms written in the IAM database's exact on-disk layout.

Each page looks like an IAM form at IAM's resolution (2479 x 3542 px, 300 dpi): a printed
header ("Sentence Database" and the form id between horizontal rules), the printed prompt
(consecutive Brown-corpus sentences), the writer's handwritten copy of it, and the "Name:"
footer.  Handwriting is a font drawn word by word and varied per *writer* (font, size,
slant, width, stroke width, ink, spacing, margins, line pitch and skew) and per *word*
(size, rotation, baseline, spacing, elastic distortion, pen pressure, ink grain); the page
gets paper shading, scanner blur and dust.  Every word and component box in the XML is the real ink box of
what was drawn, so IAM's line and word crops hold all of their ink.

Pages go through :class:`htr_tf.data.iam.IAMWriter`, so ``htr data iam-prepare`` reads the
result unchanged.  Output is a pure function of ``seed`` and the page index: the same seed
gives byte-identical files for any number of ``workers``.  Writers (``forms_per_writer``
consecutive forms each) go to one split each, 80/5/5/10 train/validation1/validation2/test,
so no writer appears in two splits.

>>> synthesize("synth", pages=4, seed=1, progress=False)          # doctest: +SKIP
{'pages': 4, 'lines': 24, 'words': 226, 'splits': {'train': 4}, 'seconds': 2.05}
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from htr_tf.charset import IAM_CHARACTERS
from htr_tf.errors import DataError

if TYPE_CHECKING:
    from htr_tf.data.iam import Form

log = logging.getLogger(__name__)

__all__ = ["synthesize", "render_form", "PageTask", "HandFont", "WriterStyle", "load_fonts",
           "inspect_font", "form_id_for", "writer_split", "HAND_FONTS_DIR", "PRINT_FONT",
           "PAGE_WIDTH", "PAGE_HEIGHT"]

_FONTS = Path(__file__).resolve().parents[1] / "assets" / "fonts"
#: Bundled OFL handwriting fonts (see ``assets/fonts/README.md``).
HAND_FONTS_DIR = _FONTS / "hand"
#: The typeface of the printed parts of the form (DejaVu Serif, Bitstream Vera licence).
PRINT_FONT = _FONTS / "print" / "DejaVuSerif.ttf"

#: IAM's form size in pixels (A4 scanned at 300 dpi).
PAGE_WIDTH, PAGE_HEIGHT = 2479, 3542

#: Writer index modulo 20 -> split; every other residue is ``train`` (80/5/5/10 overall).
_SPLIT_CYCLE = {3: "test", 8: "validation1", 13: "test", 18: "validation2"}
#: Ink pixels fainter than this (0-255 coverage) are dropped, so boxes hold all visible ink.
_MIN_ALPHA = 24
_FORM_PREFIXES = "stuvwxyz"
_SYNTH_VERSION = 1
SYNTH_V2 = 2


# -- ids and splits ------------------------------------------------------------------------
def form_id_for(index: int) -> str:
    """IAM-style form id of page ``index``: ``s00-000``, ``s00-001``, ... ``z99-999``.

    The letters ``s``-``z`` are not IAM text categories (``a``-``r``), so synthetic ids never
    collide with real ones.
    """
    if not 0 <= index < len(_FORM_PREFIXES) * 100_000:
        raise DataError(f"page index {index} is out of range (at most {len(_FORM_PREFIXES) * 100_000} pages)")
    return f"{_FORM_PREFIXES[index // 100_000]}{index // 1000 % 100:02d}-{index % 1000:03d}"


def writer_split(writer: int) -> str:
    """The split of a writer: a fixed cycle of 20, so small sets get every split early."""
    return _SPLIT_CYCLE.get(writer % 20, "train")


# -- fonts ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class HandFont:
    """A usable handwriting font and what the renderer needs to know about it."""

    path: str
    name: str
    #: x-height as a fraction of the em size (sizes are chosen so x-heights match).
    x_height: float
    #: Charset characters the font lacks; they are drawn with a fallback font.
    missing: str = ""
    #: True for a variable font with a weight axis (each writer gets a weight).
    variable: bool = False
    #: Mean stroke width as a fraction of the em size (writers' pens are matched to it).
    stroke: float = 0.05


@lru_cache(maxsize=1024)
def _pil_font(path: str, size: int, weight: int = 0) -> Any:
    from PIL import ImageFont

    f = ImageFont.truetype(path, size)
    if weight:
        try:
            f.set_variation_by_axes([weight])
        except (OSError, ValueError):  # not a variable font after all
            pass
    return f


def _has_glyph(font: Any, ch: str, notdef: tuple) -> bool:
    """True when ``ch`` draws some ink that is not the font's missing-glyph box."""
    m = font.getmask(ch)
    data = bytes(m)
    return m.size[0] > 0 and m.size[1] > 0 and any(data) and (m.size, data) != notdef


def inspect_font(path: str | os.PathLike) -> HandFont | str:
    """A :class:`HandFont`, or the reason the font cannot draw handwriting for the charset.

    A font must have every letter and digit (other characters fall back per glyph) and
    distinct lower case: caps-only fonts, whose ``a`` is a small ``A``, would draw text that
    differs from the transcription.  Lower case is checked by the ascenders: ``b d h k l``
    rise well above ``n m u x z``.
    """
    path = str(path)
    try:
        f = _pil_font(path, 100)
    except OSError as e:
        return f"cannot load: {e}"
    nd = f.getmask("\U0010FFFD")
    notdef = (nd.size, bytes(nd))
    missing = "".join(c for c in IAM_CHARACTERS if c != " " and not _has_glyph(f, c, notdef))
    lacking = [c for c in missing if c.isalnum()]
    if lacking:
        return f"lacks letters or digits {''.join(lacking)!r}"

    def height(chars: str) -> float:
        return float(np.mean([f.getbbox(c, anchor="ls")[3] - f.getbbox(c, anchor="ls")[1] for c in chars]))

    x_height = height("nmuxz")
    if x_height <= 0 or height("bdhkl") / x_height < 1.2:
        return "no distinct lower case (caps-only or small-caps font)"
    try:
        variable = any(a.get("name") in (b"Weight", "Weight") for a in f.get_variation_axes())
    except (OSError, AttributeError):
        variable = False
    return HandFont(path=path, name=Path(path).stem, x_height=x_height / 100.0, missing=missing,
                    variable=variable, stroke=_stroke_width(f) / 100.0)


def _stroke_width(font: Any) -> float:
    """Mean stroke width in pixels of some lower-case letters: twice the area over the perimeter."""
    import cv2

    m = font.getmask("nlouvemi")
    ink = (np.asarray(m, np.uint8).reshape(m.size[1], m.size[0]) >= 128).astype(np.uint8)
    contours, _ = cv2.findContours(ink, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    return float(2 * ink.sum() / perimeter) if perimeter else 5.0


def load_fonts(fonts_dir: str | os.PathLike | None = None) -> list[HandFont]:
    """Usable handwriting fonts of a directory (``.ttf``/``.otf``, recursively), sorted by name.

    Unusable fonts are logged and left out; a directory with none raises :class:`DataError`.
    """
    d = Path(fonts_dir) if fonts_dir is not None else HAND_FONTS_DIR
    if not d.is_dir():
        raise DataError(f"{d}: fonts directory not found")
    paths = sorted(p for p in d.rglob("*") if p.suffix.lower() in (".ttf", ".otf") and p.is_file())
    fonts, reasons = [], []
    for p in paths:
        r = inspect_font(p)
        if isinstance(r, str):
            log.warning("%s: font left out: %s", p, r)
            reasons.append(f"{p.name}: {r}")
        else:
            fonts.append(r)
    if not fonts:
        detail = "; ".join(reasons) if reasons else "no .ttf/.otf files"
        raise DataError(f"{d}: no usable handwriting font ({detail})")
    return fonts


# -- writer style --------------------------------------------------------------------------
@dataclass(frozen=True)
class WriterStyle:
    """How one writer writes; lengths are pixels at 300 dpi (scaled with the page)."""

    font: int
    weight: int          # weight of a variable font (0: the font's default)
    x_height: float
    slant: float         # horizontal shear, tan of the angle; positive leans right
    stretch: float       # horizontal scale of the letters
    pen: float           # stroke width the writer's pen draws
    ink: int             # gray level of the ink
    pressure: float      # how much the ink thins out along a word (0..1)
    word_gap: float      # word spacing in x-heights
    line_pitch: float    # line spacing in x-heights
    tilt: float          # writer's mean baseline angle, degrees (positive rises to the right)
    skew: float          # line-to-line baseline angle spread, degrees
    drift: float         # baseline wave amplitude in x-heights
    jitter: float        # word-to-word size spread (relative)
    elastic: float       # elastic displacement spread in pixels
    blur: float          # scanner softness: Gaussian sigma of the ink edges, pixels
    margin_left: float
    margin_right: float

    @classmethod
    def sample(cls, rng: np.random.Generator, fonts: Sequence[HandFont]) -> "WriterStyle":
        i = int(rng.integers(len(fonts)))
        return cls(
            font=i,
            weight=int(rng.integers(400, 601)) if fonts[i].variable else 0,
            x_height=float(rng.uniform(26.0, 42.0)),
            slant=float(np.clip(rng.normal(0.12, 0.12), -0.15, 0.45)),
            stretch=float(rng.uniform(0.88, 1.15)),
            pen=float(rng.uniform(3.2, 6.5)),
            ink=int(rng.integers(5, 55)),
            pressure=float(rng.uniform(0.0, 0.2)),
            word_gap=float(rng.uniform(0.8, 1.6)),
            line_pitch=float(rng.uniform(3.6, 5.0)),
            tilt=float(rng.normal(0.0, 0.6)),
            skew=float(rng.uniform(0.1, 0.8)),
            drift=float(rng.uniform(0.0, 0.12)),
            jitter=float(rng.uniform(0.02, 0.07)),
            elastic=float(rng.uniform(0.8, 2.4)),
            blur=float(rng.uniform(0.3, 0.9)),
            margin_left=float(rng.uniform(200.0, 330.0)),
            margin_right=float(rng.uniform(170.0, 320.0)),
        )


# -- one word ------------------------------------------------------------------------------
@dataclass
class _Ink:
    """A drawn word: ink coverage (0-255) cropped to the ink, and its baseline anchor."""

    alpha: np.ndarray
    anchor_x: float   # a point on the baseline, in crop coordinates
    anchor_y: float
    ink: int


def _runs(text: str, font: HandFont, fallback: dict[str, HandFont | None]) -> list[tuple[str, HandFont | None]]:
    """Split ``text`` into runs drawn by one font each (None: the print font)."""
    out: list[tuple[str, HandFont | None]] = []
    for c in text:
        f = font if c not in font.missing else fallback[c]
        if out and out[-1][1] is f:
            out[-1] = (out[-1][0] + c, f)
        else:
            out.append((c, f))
    return out


@lru_cache(maxsize=1024)
def _text_mask(runs: tuple[tuple[str, HandFont | None], ...], x_height: float, weight: int,
               stroke: int) -> tuple[np.ndarray, float]:
    """Ink coverage of a word drawn upright (read-only, cropped to the ink) and its baseline row.

    Cached: a writer draws every word at one size (size changes come from the warp after), so
    frequent words ("the", "of") are drawn by FreeType once.
    """
    import cv2
    from PIL import Image, ImageDraw

    placed = []  # (x, run, pil_font, bbox)
    x = 0.0
    for run, f in runs:
        if f is None:
            pf = _pil_font(str(PRINT_FONT), max(6, int(round(x_height / 0.52))))
        else:
            pf = _pil_font(f.path, max(6, int(round(x_height / f.x_height))), weight if f.variable else 0)
        placed.append((x, run, pf, pf.getbbox(run, anchor="ls")))
        if len(runs) > 1:
            x += pf.getlength(run)
    left = min(px + b[0] for px, _, _, b in placed)
    right = max(px + b[2] for px, _, _, b in placed)
    top = min(b[1] for *_, b in placed)
    bottom = max(b[3] for *_, b in placed)
    pad = 2
    img = Image.new("L", (int(math.ceil(right - left)) + 2 * pad, int(math.ceil(bottom - top)) + 2 * pad), 0)
    draw = ImageDraw.Draw(img)
    for px, run, pf, _ in placed:
        draw.text((pad - left + px, pad - top), run, font=pf, fill=255, anchor="ls")
    a = np.asarray(img)
    if stroke < 0:
        a = cv2.erode(a, np.ones((2, 2), np.uint8))
    elif stroke > 0:
        a = cv2.dilate(a, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (stroke + 1, stroke + 1)))
    a = np.array(a)  # own the memory, then freeze it: cached arrays are shared
    a.flags.writeable = False
    return a, float(pad - top)


@lru_cache(maxsize=1)
def _texture_tile() -> np.ndarray:
    """A fixed tile of ink texture (coverage factors 220-255), the same in every process."""
    t = np.random.default_rng(20020114).integers(220, 256, size=(256, 1024), dtype=np.uint8)
    t.flags.writeable = False
    return t


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An ``(h, w)`` window of the texture tile at a random offset (tiled when larger)."""
    t = _texture_tile()
    th, tw = t.shape
    if h > th or w > tw:
        t = np.tile(t, (h // th + 1, w // tw + 1))
        th, tw = t.shape
    y, x = int(rng.integers(th - h + 1)), int(rng.integers(tw - w + 1))
    return t[y:y + h, x:x + w]


def _draw_word(text: str, style: WriterStyle, fonts: Sequence[HandFont],
               fallback: dict[str, HandFont | None], rng: np.random.Generator, scale: float) -> _Ink:
    """Draw one word: font runs, stroke width, size/shear/stretch/rotation, elastic warp, pressure."""
    import cv2

    font = fonts[style.font]
    xh = style.x_height * scale
    # Pen width: dilate the font's strokes towards the writer's pen (or erode thick ones).
    drawn = font.stroke * xh / font.x_height
    stroke = int(np.clip(round(style.pen * scale - drawn), -1, 4))
    if stroke < 0 and drawn < 3.0:
        stroke = 0
    mask, base = _text_mask(tuple(_runs(text, font, fallback)), round(xh, 1), style.weight, stroke)
    h, w = mask.shape

    # Size, shear (slant) and stretch about the baseline, then a small rotation.
    size = float(np.clip(1.0 + style.jitter * rng.standard_normal(), 0.8, 1.25))
    slant = style.slant + 0.04 * rng.standard_normal()
    angle = math.radians(style.tilt + 0.5 * rng.standard_normal())
    c, s = math.cos(angle), math.sin(angle)
    A = size * np.array([[c, s], [-s, c]]) @ np.array([[style.stretch, -slant], [0.0, 1.0]])
    sd = style.elastic * scale
    margin = int(math.ceil(3 * sd)) + 2
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64) - [0, base]
    t = corners @ A.T
    lo, hi = t.min(axis=0) - margin, t.max(axis=0) + margin
    W, H = int(math.ceil(hi[0] - lo[0])) + 1, int(math.ceil(hi[1] - lo[1])) + 1
    M = np.hstack([A, (-lo - A @ np.array([0.0, base]))[:, None]]).astype(np.float32)
    a = cv2.warpAffine(mask, M, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)
    anchor = M @ np.array([w / 2.0, base, 1.0], np.float32)

    # Elastic distortion: a smooth displacement field, about one control point per letter.
    gw = max(2, int(round(W / max(0.8 * xh, 1.0))) + 1)
    field = cv2.resize(rng.normal(0.0, sd, size=(3, gw, 2)).astype(np.float32), (W, H),
                       interpolation=cv2.INTER_CUBIC)
    field[..., 0] += np.arange(W, dtype=np.float32)
    field[..., 1] += np.arange(H, dtype=np.float32)[:, None]
    a = cv2.remap(a, field, None, interpolation=cv2.INTER_LINEAR, borderValue=0)

    # Pen pressure (the ink thins out smoothly along the word) and ink texture.
    if style.pressure > 0:
        p = 1.0 - style.pressure * np.abs(rng.normal(0.0, 1.0, size=(2, max(2, gw // 2))))
        p = cv2.resize(np.clip(p * 255.0, 150, 255).astype(np.uint8), (W, H), interpolation=cv2.INTER_LINEAR)
        a = cv2.multiply(a, p, scale=1 / 255)
    a = cv2.multiply(a, _texture(rng, H, W), scale=1 / 255)
    if style.blur * scale >= 0.25:
        a = cv2.GaussianBlur(a, (0, 0), style.blur * scale)

    a = cv2.threshold(a, _MIN_ALPHA - 1, 255, cv2.THRESH_TOZERO)[1]
    x0, y0, cw, ch = cv2.boundingRect(a)
    if cw == 0 or ch == 0:
        raise DataError(f"word {text!r} drew no ink with font {font.name}")
    ink = int(np.clip(style.ink + rng.normal(0, 3), 0, 100))
    return _Ink(np.ascontiguousarray(a[y0:y0 + ch, x0:x0 + cw]), float(anchor[0] - x0),
                float(anchor[1] - y0), ink)


def _components(alpha: np.ndarray, ox: int, oy: int) -> list[tuple[int, int, int, int]]:
    """Connected components (8-connected) of the ink as page-pixel ``x, y, w, h`` boxes, left to right."""
    import cv2

    n, _, stats, _ = cv2.connectedComponentsWithStats((alpha > 0).astype(np.uint8), connectivity=8)
    return sorted((int(ox + s[0]), int(oy + s[1]), int(s[2]), int(s[3])) for s in stats[1:n])


# -- the page ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PageTask:
    """Everything one page depends on (what a worker receives)."""

    index: int
    seed: int
    writer: int
    sentences: tuple[str, ...]
    fonts: tuple[HandFont, ...]
    scale: float = 1.0
    #: 1: the v1 generator (fonts drawn word by word); 2: v2 writers
    #: (:func:`htr_tf.data.synth_lines.form_word_drawer`: all fonts and the pen simulator).
    version: int = 1
    p_pen: float = 0.35

    @property
    def form_id(self) -> str:
        return form_id_for(self.index)

    @property
    def writer_id(self) -> str:
        return f"{self.writer:03d}"

    @property
    def split(self) -> str:
        return writer_split(self.writer)


def _wrap(text: str, font: Any, width: float) -> list[str]:
    """Greedy word wrap of printed text to ``width`` pixels."""
    lines, cur = [], ""
    for w in text.split():
        cand = f"{cur} {w}" if cur else w
        if cur and font.getlength(cand) > width:
            lines.append(cur)
            cur = w
        else:
            cur = cand
    if cur:
        lines.append(cur)
    return lines


@dataclass
class _Placed:
    word: int
    x: int
    y: int


def _layout(inks: list[_Ink], n_words: int, style: WriterStyle, rng_lines: np.ndarray,
            gaps: np.ndarray, jit: np.ndarray, top: float, bottom: float, x_left: float,
            x_right: float, xh: float) -> tuple[list[list[_Placed]], int]:
    """Place the first ``n_words`` words on lines; returns the lines and how many words fit."""
    lines: list[list[_Placed]] = []
    i, k = 0, 0
    baseline = top + 2.2 * xh
    while i < n_words and k < len(rng_lines):
        indent, tilt, phase, pitch = rng_lines[k]
        x0 = x_left + indent * xh
        slope = math.tan(math.radians(style.tilt + tilt * style.skew))
        period = 9.0 * xh
        x, line = x0, []
        while i < n_words:
            ink = inks[i]
            wdt = ink.alpha.shape[1]
            if line and x + wdt > x_right:
                break
            ax = x + ink.anchor_x
            by = baseline + (ax - x0) * slope + style.drift * xh * math.sin(phase + ax / period) + jit[i] * xh
            line.append(_Placed(i, int(round(x)), int(round(by - ink.anchor_y))))
            x += wdt + gaps[i] * xh
            i += 1
        if max(p.y + inks[p.word].alpha.shape[0] for p in line) > bottom:
            i -= len(line)
            break
        lines.append(line)
        baseline += style.line_pitch * xh * pitch
        k += 1
    return lines, i


def _paper(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, int]:
    """Blank paper: a base gray level with gentle shading (uint8) and that level."""
    import cv2

    level = int(rng.integers(238, 253))
    shade = level + rng.normal(0.0, 1.2, size=(4, 3))
    small = cv2.resize(shade.astype(np.float32), (w // 16 + 1, h // 16 + 1), interpolation=cv2.INTER_CUBIC)
    small = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), level


def render_form(task: PageTask) -> tuple[Form, np.ndarray, str]:
    """Draw one form: returns ``(iam.Form, page as 2-D uint8, split)``."""
    from htr_tf.data.iam import Cmp, Form, Line, Word

    s = task.scale
    W, H = int(round(PAGE_WIDTH * s)), int(round(PAGE_HEIGHT * s))
    style = WriterStyle.sample(np.random.default_rng([task.seed, 1, task.writer]), task.fonts)
    rng = np.random.default_rng([task.seed, 2, task.index])
    fallback = _fallbacks(task.fonts)
    xh = style.x_height * s

    # Candidate handwriting: every word of the prompt, drawn once.
    sent_words = [sn.split() for sn in task.sentences]
    words = [w for sw in sent_words for w in sw]
    ends = np.cumsum([len(sw) for sw in sent_words])
    if task.version == 2:
        from htr_tf.data.synth_lines import form_word_drawer

        draw = form_word_drawer(task, style)
        inks = [draw(w, rng) for w in words]
    else:
        inks = [_draw_word(w, style, task.fonts, fallback, rng, s) for w in words]
    gaps = np.clip(style.word_gap * (1 + 0.2 * rng.standard_normal(len(words))), 0.7, None)
    jit = 0.05 * rng.standard_normal(len(words))
    rng_lines = np.stack([rng.normal(0, 0.25, 60), rng.standard_normal(60),
                          rng.uniform(0, 2 * np.pi, 60), 1 + 0.04 * rng.standard_normal(60)], axis=1)

    print_ink = int(rng.integers(15, 50))
    left, right = 250 * s, W - 250 * s
    head = _pil_font(str(PRINT_FONT), max(6, int(round(56 * s))))
    body = _pil_font(str(PRINT_FONT), max(6, int(round(40 * s))))
    pitch = 60 * s
    prompt_top = 430 * s
    footer_rule = H - 560 * s

    # Fit: the most whole sentences (else words) whose handwriting fits under the prompt.
    n = len(words)
    while True:
        printed = _wrap(" ".join(words[:n]), body, right - left)
        rule2 = prompt_top + len(printed) * pitch + 30 * s
        zone_top, zone_bottom = rule2 + 70 * s, footer_rule - 40 * s
        lines, fitted = _layout(inks, n, style, rng_lines, gaps, jit, zone_top, zone_bottom,
                                style.margin_left * s, W - style.margin_right * s, xh)
        if fitted == n:
            break
        whole = [int(e) for e in ends if e <= fitted]
        n = whole[-1] if whole else fitted
        if n == 0:
            raise DataError(f"form {task.form_id}: not even one word fits on the page "
                            f"(scale {s} is too small?)")

    # The printed parts, drawn into the two bands of the page that hold them.
    page, paper = _paper(rng, H, W)
    rule_w, bold, dark = max(2, int(round(4 * s))), max(1, int(round(1.5 * s))), print_ink

    def rule(draw: Any, y: float) -> None:
        draw.rectangle([left - 60 * s, y, right + 60 * s, y + rule_w], fill=dark)

    def top_band(draw: Any, dy: float) -> None:
        draw.text((left, 190 * s + dy), "Sentence Database", font=head, fill=dark, anchor="ls",
                  stroke_width=bold, stroke_fill=dark)
        draw.text((right, 190 * s + dy), task.form_id.upper(), font=head, fill=dark, anchor="rs",
                  stroke_width=bold, stroke_fill=dark)
        rule(draw, 290 * s + dy)
        rule(draw, rule2 + dy)
        for k, text in enumerate(printed):
            draw.text((left, prompt_top + (k + 0.6) * pitch + dy), text, font=body, fill=dark, anchor="ls")

    def footer_band(draw: Any, dy: float) -> None:
        rule(draw, footer_rule + dy)
        draw.text((left, footer_rule + 140 * s + dy), "Name:", font=body, fill=dark, anchor="ls")

    _draw_band(page, 0, rule2 + rule_w + 2, top_band)
    _draw_band(page, footer_rule - 2, footer_rule + 200 * s, footer_band)

    # The handwriting.
    form_lines = []
    for li, line in enumerate(lines):
        lid = f"{task.form_id}-{li:02d}"
        wobjs = []
        for wi, p in enumerate(line):
            ink = inks[p.word]
            alpha, x, y = _clip_to_page(ink.alpha, p.x, p.y, W, H)
            _composite(page, alpha, x, y, ink.ink)
            cmps = [Cmp(*c) for c in _components(alpha, x, y)]
            wobjs.append(Word(id=f"{lid}-{wi:02d}", text=words[p.word], cmps=cmps))
        thr = int(round((paper + style.ink) / 2))
        form_lines.append(Line(id=lid, text=" ".join(w.text for w in wobjs), words=wobjs,
                               threshold=thr))
    _scan_noise(page, rng)
    form = Form(id=task.form_id, writer_id=task.writer_id, width=W, height=H,
                printed_lines=printed, lines=form_lines)
    return form, page, task.split


def _draw_band(page: np.ndarray, y0: float, y1: float, fn: Callable[[Any, float], None]) -> None:
    """Run ``fn(draw, dy)`` on rows ``y0..y1`` of the page with PIL (``dy`` = -first row)."""
    from PIL import Image, ImageDraw

    a, b = max(0, int(y0)), min(page.shape[0], int(math.ceil(y1)))
    img = Image.fromarray(page[a:b])
    fn(ImageDraw.Draw(img), -a)
    page[a:b] = np.asarray(img)


def _fallbacks(fonts: Sequence[HandFont]) -> dict[str, HandFont | None]:
    """For each character some font lacks: the first font that has it (None: print font)."""
    need = {c for f in fonts for c in f.missing}
    return {c: next((f for f in fonts if c not in f.missing), None) for c in need}


def _clip_to_page(alpha: np.ndarray, x: int, y: int, W: int, H: int) -> tuple[np.ndarray, int, int]:
    """Keep a word inside the page: shift it in, and shrink it if it is wider than the page."""
    import cv2

    h, w = alpha.shape
    if w > W - 2 or h > H - 2:
        f = min((W - 2) / w, (H - 2) / h)
        alpha = cv2.resize(alpha, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA)
        alpha[alpha < _MIN_ALPHA] = 0
        h, w = alpha.shape
    x = int(min(max(x, 1), W - 1 - w))
    y = int(min(max(y, 1), H - 1 - h))
    return alpha, x, y


def _composite(page: np.ndarray, alpha: np.ndarray, x: int, y: int, ink: int) -> None:
    """Lay ink of gray level ``ink`` with coverage ``alpha`` onto the page, in place."""
    h, w = alpha.shape
    region = page[y:y + h, x:x + w].astype(np.uint16)
    a = alpha.astype(np.uint16)
    page[y:y + h, x:x + w] = ((region * (255 - a) + ink * a + 127) // 255).astype(np.uint8)


def _scan_noise(page: np.ndarray, rng: np.random.Generator) -> None:
    """A few specks of dust, in place.

    No per-pixel grain on the paper: real IAM scans have clean paper, and grain makes the
    PNG files ten times larger and slower to write; the ink carries its own texture.
    """
    h, w = page.shape
    for _ in range(int(rng.integers(0, 12))):
        r = int(rng.integers(1, 3))
        cy, cx = int(rng.integers(r, h - r)), int(rng.integers(r, w - r))
        page[cy - r + 1:cy + r, cx - r + 1:cx + r] = int(rng.integers(120, 200))


# -- the whole set -------------------------------------------------------------------------
def _tasks(pages: int, seed: int, sentences: Sequence[str], fonts: tuple[HandFont, ...],
           scale: float, forms_per_writer: int, start: int, version: int = 1,
           p_pen: float = 0.35) -> Iterator[PageTask]:
    for index in range(start, start + pages):
        rng = np.random.default_rng([seed, 3, index])
        target = int(rng.integers(40, 90))
        i = int(rng.integers(len(sentences)))
        chosen: list[str] = []
        count = 0
        while count < target and len(chosen) < 12:
            chosen.append(sentences[(i + len(chosen)) % len(sentences)])
            count += len(chosen[-1].split())
        yield PageTask(index=index, seed=seed, writer=index // forms_per_writer,
                       sentences=tuple(chosen), fonts=fonts, scale=scale, version=version, p_pen=p_pen)


def synthesize(out: str | os.PathLike, pages: int, seed: int = 0,
               fonts_dir: str | os.PathLike | None = None, text: str | os.PathLike | None = None,
               workers: int = 1, progress: bool = True, scale: float = 1.0,
               forms_per_writer: int = 2, start: int = 0, style: str = "v1",
               system_fonts: bool = True, p_pen: float = 0.35) -> dict:
    """Write ``pages`` synthetic forms into ``out`` in IAM's layout; returns a summary.

    ``fonts_dir`` holds handwriting fonts (default: the bundled ones); ``text`` is a
    ``.txt``, ``.txt.gz`` or ``brown.zip`` (default: the bundled Brown extract); ``scale``
    shrinks the page and everything on it (1.0 is IAM's 300 dpi; tests use less);
    ``start`` is the first page index, so sets can be extended.  ``workers > 1`` renders in
    that many processes with the same result.  Also writes ``out/synth.json``.

    ``style="v2"`` draws the handwriting with the v2 writers of
    :mod:`htr_tf.data.synth_lines` (every non-reserved font of :mod:`htr_tf.data.fonts`
    unless ``system_fonts=False``, and the pen simulator for a ``p_pen`` share of writers);
    ``"v1"`` (the default) remakes the sets of the first generator byte for byte.
    """
    from tqdm import tqdm

    from htr_tf.data.iam import IAMWriter
    from htr_tf.data.text import load_sentences
    from htr_tf.fileio import atomic_write_text

    if pages < 1:
        raise DataError(f"pages must be at least 1, got {pages}")
    if workers < 1:
        raise DataError(f"workers must be at least 1, got {workers}")
    if forms_per_writer < 1:
        raise DataError(f"forms_per_writer must be at least 1, got {forms_per_writer}")
    if not 0.2 <= scale <= 2.0:
        raise DataError(f"scale must be between 0.2 and 2.0, got {scale}")
    if start < 0 or seed < 0:
        raise DataError(f"start and seed must be at least 0, got start={start}, seed={seed}")
    form_id_for(start + pages - 1)
    if style not in ("v1", "v2"):
        raise DataError(f"unknown synth style {style!r}; valid: v1, v2")
    if style == "v2":
        from htr_tf.charset import Charset
        from htr_tf.data.synth_lines import load_v2_fonts

        fonts = load_v2_fonts(fonts_dir, system_fonts, Charset())  # type: ignore[assignment]
    else:
        fonts = tuple(load_fonts(fonts_dir))
    sentences = load_sentences(text)
    out = Path(out)
    t0 = time.perf_counter()
    version = SYNTH_V2 if style == "v2" else _SYNTH_VERSION
    tasks = _tasks(pages, seed, sentences, fonts, scale, forms_per_writer, start, version, p_pen)
    counts = {"pages": 0, "lines": 0, "words": 0}
    splits: dict[str, int] = {}
    with IAMWriter(out) as writer:
        for form, page, split in tqdm(_render_all(tasks, workers), total=pages, desc="synth forms",
                                      unit="form", disable=not progress):
            writer.add_form(form, page, split=split)
            counts["pages"] += 1
            counts["lines"] += len(form.lines)
            counts["words"] += sum(len(ln.words) for ln in form.lines)
            splits[split] = splits.get(split, 0) + 1
    info = {"synth_version": version, "seed": seed, "start": start, "pages": pages,
            "scale": scale, "forms_per_writer": forms_per_writer,
            "fonts": [f.name for f in fonts], "text": str(text) if text is not None else "bundled Brown extract",
            "sentences": len(sentences)}
    if version == 2:
        info["p_pen"] = p_pen
    atomic_write_text(out / "synth.json", json.dumps(info, indent=2) + "\n")
    return {**counts, "splits": dict(sorted(splits.items())), "seconds": round(time.perf_counter() - t0, 3)}


def _init_worker() -> None:
    """One OpenCV thread per worker process: the processes already share out the cores."""
    import cv2

    cv2.setNumThreads(1)


def _render_all(tasks: Iterator[PageTask], workers: int) -> Iterator[tuple[Form, np.ndarray, str]]:
    """Render in order, in this process or in a pool of ``workers`` spawned processes."""
    if workers == 1:
        for t in tasks:
            yield render_form(t)
        return
    import multiprocessing as mp
    from collections import deque

    # spawn, not fork: the parent may hold TensorFlow's threads.  At most 2 pages per worker
    # are in flight, so memory stays bounded when writing is slower than rendering.
    with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        pending: deque = deque()
        for t in tasks:
            pending.append(pool.apply_async(render_form, (t,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
