"""A stroke-level handwriting simulator: single-stroke (Hershey) glyphs drawn by a simulated pen.

Fonts give as many handwriting styles as there are fonts.  Here a glyph is the centre line
of the pen's path (polylines of the Hershey vector fonts, bundled in
``htr_tf/assets/fonts/hershey``), and each *writer* reshapes every glyph once with a smooth
random deformation of their own (their allograph of that letter), then each *instance*
again with a smaller one, so no two writers and no two letters are quite alike.  The path
is smoothed (Chaikin corner cutting), slanted, stretched, joined to the next letter in
cursive writers, laid on a drifting baseline, and drawn with a pen whose width follows a
smooth pressure curve along the stroke.  The number of styles is the number of writers.

French letters the Hershey fonts lack are composed: the base letter (Unicode NFD) with
its accent drawn as strokes (acute, grave, circumflex, diaeresis, cedilla); ``œ æ`` are
two glyphs joined; ``« » ° ’`` are drawn from strokes.

The Hershey fonts were originally created by Dr. A. V. Hershey while working at the U. S.
National Bureau of Standards; the format of the font data was originally created by James
Hurt, Cognition, Inc. (see ``htr_tf/assets/fonts/hershey/README.md``).
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from htr_tf.errors import DataError

__all__ = ["HERSHEY_DIR", "HERSHEY_FONTS", "StrokeFont", "StrokeWriter", "load_stroke_font",
           "stroke_fonts", "draw_stroke_text"]

HERSHEY_DIR = Path(__file__).resolve().parents[1] / "assets" / "fonts" / "hershey"
#: Bundled Hershey fonts used for handwriting, and whether their lower case joins (cursive).
HERSHEY_FONTS: dict[str, bool] = {
    "cursive": True, "scripts": True, "scriptc": True, "futural": False, "futuram": False,
    "rowmans": False, "timesi": False,
}

Polyline = np.ndarray  # (n, 2) float64: x right, y down; baseline y = 0, x-height 1


@dataclass(frozen=True)
class _Glyph:
    left: float
    right: float
    strokes: tuple[Polyline, ...]


@dataclass(frozen=True)
class StrokeFont:
    """A single-stroke font in x-height units (baseline at y = 0, y down)."""

    name: str
    glyphs: dict
    cursive: bool


def _parse_jhf(text: str, name: str) -> list[tuple[float, float, list[list[tuple[float, float]]]]]:
    """Glyphs of a ``.jhf`` file in order: (left, right, strokes in raw Hershey units)."""
    lines = text.splitlines()
    out = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip("\n")
        i += 1
        if not line.strip():
            continue
        try:
            n = int(line[5:8])
        except ValueError:
            raise DataError(f"{name}: not a Hershey .jhf file (line {i})") from None
        data = line[8:]
        while len(data) < 2 * n and i < len(lines):  # a glyph may continue on the next line
            data += lines[i].rstrip("\n")
            i += 1
        left, right = ord(data[0]) - 82, ord(data[1]) - 82
        strokes: list[list[tuple[float, float]]] = [[]]
        for k in range(1, n):
            a, b = data[2 * k], data[2 * k + 1]
            if a == " " and b == "R":
                strokes.append([])
            else:
                strokes[-1].append((ord(a) - 82.0, ord(b) - 82.0))
        out.append((float(left), float(right), [s for s in strokes if s]))
    return out


@lru_cache(maxsize=None)
def load_stroke_font(name: str) -> StrokeFont:
    """A bundled Hershey font by name (one of :data:`HERSHEY_FONTS`), in x-height units."""
    if name not in HERSHEY_FONTS:
        raise DataError(f"unknown stroke font {name!r}; valid: {sorted(HERSHEY_FONTS)}")
    path = HERSHEY_DIR / f"{name}.jhf"
    raw = _parse_jhf(path.read_text(encoding="ascii"), str(path))
    chars = [chr(32 + i) for i in range(len(raw))]
    table = dict(zip(chars, raw))
    xs = [y for s in table["x"][2] for _, y in s]
    base, top = max(xs), min(xs)
    xh = base - top
    glyphs = {}
    for ch, (left, right, strokes) in table.items():
        polys = tuple(np.array([((x - left) / xh, (y - base) / xh) for x, y in s], np.float64)
                      for s in strokes)
        glyphs[ch] = _Glyph(0.0, (right - left) / xh, polys)
    return StrokeFont(name=name, glyphs=glyphs, cursive=HERSHEY_FONTS[name])


def stroke_fonts() -> list[StrokeFont]:
    """Every bundled stroke font."""
    return [load_stroke_font(n) for n in HERSHEY_FONTS]


# -- composed characters ------------------------------------------------------------------
def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 10) -> Polyline:
    t = np.linspace(a0, a1, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


_ACCENTS = {
    "\u0301": lambda c, t: (np.array([[c - 0.12, t], [c + 0.16, t - 0.3]]),),           # acute
    "\u0300": lambda c, t: (np.array([[c - 0.16, t - 0.3], [c + 0.12, t]]),),           # grave
    "\u0302": lambda c, t: (np.array([[c - 0.22, t], [c, t - 0.28], [c + 0.22, t]]),),  # circumflex
    "\u0308": lambda c, t: (_arc(c - 0.17, t - 0.06, 0.04, 0.04, 0, 2 * np.pi, 6),      # diaeresis
                            _arc(c + 0.17, t - 0.06, 0.04, 0.04, 0, 2 * np.pi, 6)),
    "\u0303": lambda c, t: (np.stack([np.linspace(c - 0.22, c + 0.22, 9),                  # tilde
                                      t - 0.12 - 0.07 * np.sin(np.linspace(0, 2 * np.pi, 9))], 1),),
    "\u0327": lambda c, t: (np.array([[c, 0.0], [c + 0.05, 0.15], [c + 0.18, 0.25], [c + 0.1, 0.4],
                                      [c - 0.12, 0.42]]),),                               # cedilla
}


def _shift(strokes: Sequence[Polyline], dx: float) -> tuple[Polyline, ...]:
    return tuple(s + [dx, 0.0] for s in strokes)


def _compose(font: StrokeFont, ch: str) -> _Glyph | None:
    """A glyph for ``ch``: the font's own, or composed from strokes (None: cannot draw)."""
    g = font.glyphs.get(ch)
    if g is not None:
        return g
    if ch in "œæŒÆ":
        a = font.glyphs.get({"œ": "o", "æ": "a", "Œ": "O", "Æ": "A"}[ch])
        e = font.glyphs.get("e" if ch.islower() else "E")
        if a is None or e is None:
            return None
        ov = 0.12 if ch.islower() else 0.25
        return _Glyph(0.0, a.right + e.right - ov, a.strokes + _shift(e.strokes, a.right - ov))
    if ch in "«»":
        d = 1 if ch == "«" else -1
        c1 = np.array([[0.35, -0.75], [0.1 if d == 1 else 0.6, -0.45], [0.35, -0.15]])
        if d == -1:
            c1 = np.array([[0.1, -0.75], [0.35, -0.45], [0.1, -0.15]])
        return _Glyph(0.0, 0.95, (c1 + [0.1, 0], c1 + [0.4, 0]))
    if ch == "°":
        return _Glyph(0.0, 0.6, (_arc(0.3, -1.25, 0.16, 0.16, 0, 2 * np.pi, 12),))
    if ch == "’":
        return font.glyphs.get("'")
    base, *marks = unicodedata.normalize("NFD", ch)
    g = font.glyphs.get(base)
    if g is None or not marks or any(m not in _ACCENTS for m in marks):
        return None
    strokes = g.strokes
    allpts = np.concatenate(strokes) if strokes else np.zeros((1, 2))
    c = float((allpts[:, 0].min() + allpts[:, 0].max()) / 2)
    top = float(allpts[:, 1].min()) - 0.18
    for m in marks:
        if m == "\u0327":
            bottom = allpts[allpts[:, 1] > -0.3]
            cx = float(bottom[:, 0].mean()) if len(bottom) else c
            strokes = strokes + _ACCENTS[m](cx, top)
        else:
            strokes = strokes + _ACCENTS[m](c, top)
    return _Glyph(g.left, g.right, strokes)


def covers(font: StrokeFont, chars: str) -> str:
    """The characters of ``chars`` (other than space) that ``font`` cannot draw."""
    return "".join(c for c in chars if c != " " and _compose(font, c) is None)


# -- writers ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class StrokeWriter:
    """How one simulated writer moves the pen (lengths in x-heights unless noted)."""

    font: str
    seed: int
    slant: float          # shear, tan of the angle
    stretch: float        # horizontal scale of the letters
    spacing: float        # extra gap between letters
    word_gap: float
    wobble: float         # strength of the writer's own glyph deformation
    jitter: float         # strength of the per-instance deformation
    pen: float            # pen width, pixels at x-height ``xh`` = 1 (scaled by the caller)
    pressure: float       # relative pen width variation along a stroke (0..1)
    joins: bool           # joins letters within a word
    caps: float           # capital height relative to the font
    round_: int           # smoothing passes

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "StrokeWriter":
        name = str(rng.choice(list(HERSHEY_FONTS)))
        cursive = HERSHEY_FONTS[name]
        return cls(
            font=name, seed=int(rng.integers(1 << 31)),
            slant=float(np.clip(rng.normal(0.15 if cursive else 0.05, 0.15), -0.25, 0.55)),
            stretch=float(rng.uniform(0.8, 1.25)),
            spacing=float(rng.uniform(-0.04, 0.12)) if cursive else float(rng.uniform(0.0, 0.25)),
            word_gap=float(rng.uniform(0.45, 1.1)),
            wobble=float(rng.uniform(0.03, 0.13)),
            jitter=float(rng.uniform(0.01, 0.05)),
            pen=float(rng.uniform(0.07, 0.2)),
            pressure=float(rng.uniform(0.0, 0.5)),
            joins=cursive or bool(rng.random() < 0.15),
            caps=float(rng.uniform(0.85, 1.1)),
            round_=int(rng.integers(1, 3)),
        )


def _field(rng: np.random.Generator, k: int = 3) -> np.ndarray:
    """Random coefficients of a smooth 2-D displacement: ``k`` sine terms per axis."""
    return np.concatenate([rng.normal(0, 1, (2, k)), rng.uniform(0.6, 2.6, (2, k)),
                           rng.uniform(0.6, 2.6, (2, k)), rng.uniform(0, 2 * np.pi, (2, k))], 1)


def _displace(pts: np.ndarray, coef: np.ndarray, amp: float) -> np.ndarray:
    k = coef.shape[1] // 4
    a, fx, fy, ph = coef[:, :k], coef[:, k:2 * k], coef[:, 2 * k:3 * k], coef[:, 3 * k:]
    x, y = pts[:, 0:1], pts[:, 1:2]
    dx = (a[0] * np.sin(fx[0] * x + fy[0] * y + ph[0])).sum(1)
    dy = (a[1] * np.sin(fx[1] * x + fy[1] * y + ph[1])).sum(1)
    return pts + amp / math.sqrt(k) * np.stack([dx, dy], 1)


def _chaikin(p: np.ndarray, passes: int) -> np.ndarray:
    for _ in range(passes):
        if len(p) < 3:
            return p
        q = 0.75 * p[:-1] + 0.25 * p[1:]
        r = 0.25 * p[:-1] + 0.75 * p[1:]
        mid = np.empty((2 * len(q), 2))
        mid[0::2], mid[1::2] = q, r
        p = np.concatenate([p[:1], mid, p[-1:]])
    return p


@lru_cache(maxsize=8192)
def _allograph(font_name: str, seed: int, ch: str, wobble: float) -> tuple[float, tuple[Polyline, ...]] | None:
    """A writer's own version of ``ch``: the glyph deformed by the writer's field for it."""
    font = load_stroke_font(font_name)
    g = _compose(font, ch)
    if g is None:
        return None
    rng = np.random.default_rng([seed, ord(ch)])
    coef = _field(rng)
    sx = 1.0 + 0.08 * rng.standard_normal()
    strokes = tuple(_displace(s * [sx, 1.0], coef, wobble) for s in g.strokes)
    return g.right * sx, strokes


def draw_stroke_text(text: str, writer: StrokeWriter, rng: np.random.Generator, xh: float
                     ) -> tuple[list[list[tuple[np.ndarray, float]]], list[tuple[float, float]]]:
    """Pen paths of ``text`` in pixels, as words of ``(points [n, 2], pen width)`` strokes.

    ``xh`` is the x-height in pixels; the baseline is y = 0 (the caller curves it).
    Returns the strokes of each word and each word's horizontal extent.  Characters the
    font cannot draw raise :class:`DataError` (check with :func:`covers` first).
    """
    words: list[list[tuple[np.ndarray, float]]] = []
    extents: list[tuple[float, float]] = []
    x = 0.0
    slant = writer.slant
    pen = max(writer.pen * xh, 0.6)
    for wi, word in enumerate(text.split(" ")):
        if wi:
            x += (writer.word_gap + 0.15 * rng.standard_normal()) * 1.0
        strokes: list[tuple[np.ndarray, float]] = []
        x0 = x
        prev_end: np.ndarray | None = None
        for ch in word:
            al = _allograph(writer.font, writer.seed, ch, writer.wobble)
            if al is None:
                raise DataError(f"stroke font {writer.font} cannot draw {ch!r}")
            adv, glyph = al
            scale = (writer.caps if ch.isupper() else 1.0) * (1.0 + 0.04 * rng.standard_normal())
            coef = _field(rng, 2)
            dy = 0.04 * rng.standard_normal()
            placed = []
            for s in glyph:
                p = _displace(s, coef, writer.jitter) * scale
                p = p * [writer.stretch, 1.0]
                p = p + [x, dy]
                placed.append(p)
            if writer.joins and prev_end is not None and placed and ch.isalpha():
                start = placed[0][0]
                gap = np.linalg.norm(start - prev_end)
                if 0.02 < gap < 0.9:
                    mid = (prev_end + start) / 2 + [0.0, 0.08]
                    placed[0] = np.concatenate([np.stack([prev_end, mid]), placed[0]])
            if placed:
                last = placed[-1][-1]
                prev_end = last if ch.isalpha() else None
            strokes += [(p, 1.0) for p in placed]
            x += adv * scale * writer.stretch + writer.spacing + 0.03 * rng.standard_normal()
        out = []
        for p, _ in strokes:
            p = _chaikin(p, writer.round_)
            p = np.stack([p[:, 0] - slant * p[:, 1], p[:, 1]], 1) * xh
            w = pen * (1.0 + writer.pressure * 0.5 * rng.uniform(-1, 1))
            out.append((p, w))
        words.append(out)
        extents.append((x0 * xh, x * xh))
    return words, extents


def render_strokes(strokes: Sequence[tuple[np.ndarray, float]], shape: tuple[int, int],
                   rng: np.random.Generator, pressure: float, supersample: int = 2) -> np.ndarray:
    """Ink coverage (uint8 0-255) of pen strokes ``(points in pixels, width)`` on a canvas.

    Drawn ``supersample`` times larger with anti-aliased segments whose width follows a
    smooth pressure curve along each stroke, then area-downsampled: sub-pixel pen widths.
    """
    import cv2

    h, w = shape
    S = supersample
    canvas = np.zeros((h * S, w * S), np.uint8)
    for pts, width in strokes:
        if len(pts) < 2:
            pts = np.concatenate([pts, pts + 0.01])
        q = np.rint(pts * S * 16).astype(np.int32)  # 4 fractional bits
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        s = np.concatenate([[0.0], np.cumsum(seg)])
        period = rng.uniform(3.0, 9.0) * max(width, 1.0) * 4
        wv = width * (1.0 + pressure * np.sin(s / period * 2 * np.pi + rng.uniform(0, 2 * np.pi)))
        # taper at both ends (the pen lands and lifts)
        total = s[-1] if s[-1] > 0 else 1.0
        taper = np.clip(np.minimum(s, total - s) / max(2.0 * width, 1e-3), 0.55, 1.0)
        wv = np.maximum(wv * taper * S, 1.0)
        # constant-width chunks of a few points each, drawn as polylines
        k = 4
        for i in range(0, len(q) - 1, k):
            chunk = q[i:i + k + 1]
            t = int(round(float(wv[min(i + k // 2, len(wv) - 1)])))
            cv2.polylines(canvas, [chunk.reshape(-1, 1, 2)], False, 255, thickness=max(1, t),
                          lineType=cv2.LINE_AA, shift=4)
    if S > 1:
        canvas = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
    return canvas
