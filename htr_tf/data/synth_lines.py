"""Synthetic handwritten *lines* by many writers (``htr data synth --lines N``), written as line records.

Version 2 of the generator.  Each line has a writer; writers change every
``lines_per_writer`` lines and go to one split each (``train``/``validation``/``test``,
80/10/10, by a fixed cycle), so no writer is in two splits.  A writer is either

* a **font writer**: one of the handwriting fonts of :func:`htr_tf.data.fonts.font_sources`
  (bundled, Debian, PyPI), sometimes two mixed word by word, each glyph drawn with its own
  size and baseline jitter; or
* a **pen writer** (:mod:`htr_tf.data.strokes`): single-stroke glyphs deformed by the
  writer's own smooth field and again per instance, joined in cursive, drawn with a
  simulated pen whose width follows the pressure;

and has their own slant, size, stretch, spacing, baseline drift and curvature, word
rotation, pen width.  The line then gets a random grid warp (Wigington et al. 2017) or an
elastic distortion, thicker or thinner strokes, sometimes the descenders/ascenders of the
neighbouring lines, and goes onto paper and through a scanner (:mod:`htr_tf.data.paper`).

Text is English (the bundled Brown extract) or French (:mod:`htr_tf.data.french`), in the
charset of :func:`synth_charset` (IAM's 79 symbols plus the Latin letters of French).
Output is a pure function of ``seed`` and the line index: the same seed gives
byte-identical records for any number of ``workers``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator, Sequence

import numpy as np

from htr_tf.charset import IAM_CHARACTERS, Charset
from htr_tf.errors import DataError

__all__ = ["SYNTH_LINES_VERSION", "SYNTH_LINES_REVISION", "EXTRA_LATIN", "KERAS_LAYERS", "EXTRA_ELASTIC",
           "extra_elastic", "stale_revision_note", "synth_charset", "LineWriterStyle", "LineTask",
           "render_line", "synthesize_lines", "line_split", "load_v2_fonts", "keras_augment", "iter_line_tasks",
           "describe", "form_word_drawer", "contact_sheet"]

SYNTH_LINES_VERSION = 2
#: Bumped when the same seed draws different lines: 2 replaced Keras' ``RandomElasticTransform``
#: layer, which turned wide lines to speckle, by an elastic distortion sized to the line
#: (:data:`KERAS_LAYERS`); every other line is drawn as in revision 1.
SYNTH_LINES_REVISION = 2
#: Letters of French (and a few neighbours) added to IAM's charset when
#: ``htr_tf.charset.LATIN_CHARACTERS`` is not there.
EXTRA_LATIN = "éàèêçÉïûôâîüùöäœëÀæÇÈÊÔ«»’°"
#: Writer index modulo 20 -> split; every other residue is ``train`` (80/10/10).
_LINE_SPLITS = {3: "test", 8: "validation", 13: "test", 18: "validation"}


def synth_charset() -> Charset:
    """The charset of v2 lines: ``LATIN_CHARACTERS`` when the charset module has it, else IAM + French."""
    import htr_tf.charset as cs

    chars = getattr(cs, "LATIN_CHARACTERS", None)
    if not chars:
        chars = IAM_CHARACTERS + "".join(c for c in EXTRA_LATIN if c not in IAM_CHARACTERS)
    return Charset(chars)


def line_split(writer: int) -> str:
    return _LINE_SPLITS.get(writer % 20, "train")


# -- fonts -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class V2Font:
    path: str
    name: str
    origin: str
    x_height: float
    stroke: float
    variable: bool
    missing: str


@lru_cache(maxsize=8)
def _load_v2_fonts_cached(fonts_dir: str | None, include_system: bool, chars: str) -> tuple[V2Font, ...]:
    from htr_tf.data.fonts import font_sources
    from htr_tf.data.synth import _has_glyph, _pil_font, inspect_font

    sources, _ = font_sources(include_system=include_system, fonts_dir=fonts_dir)
    out = []
    for s in sources:
        r = inspect_font(s.path)
        if isinstance(r, str):
            continue
        f = _pil_font(s.path, 100)
        nd = f.getmask("\U0010FFFD")
        notdef = (nd.size, bytes(nd))
        missing = "".join(c for c in chars if c != " " and (c in r.missing or not _has_glyph(f, c, notdef)))
        out.append(V2Font(s.path, r.name, s.origin, r.x_height, r.stroke, r.variable, missing))
    if not out:
        raise DataError("no usable handwriting font found (see `htr data fonts`)")
    return tuple(out)


def load_v2_fonts(fonts_dir: str | os.PathLike | None = None, include_system: bool = True,
                  charset: Charset | None = None) -> tuple[V2Font, ...]:
    """Usable fonts for v2 lines (each checked against the reserved list), with what each lacks."""
    cs = charset or synth_charset()
    return _load_v2_fonts_cached(str(fonts_dir) if fonts_dir is not None else None, include_system, cs.chars)


# -- writers -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LineWriterStyle:
    """How one writer writes a line (lengths in x-heights unless noted)."""

    kind: str             # "font" or "pen"
    fonts: tuple[int, ...]  # font writers: the fonts (a second one is mixed in word by word)
    mix: float            # share of words in the second font
    weight: int
    pen_seed: int         # pen writers: their StrokeWriter's draw
    xh: float             # x-height, pixels
    slant: float
    stretch: float
    word_gap: float
    glyph_jitter: float   # per-glyph size/baseline jitter (font writers)
    word_rotate: float    # degrees
    word_scale: float     # relative size spread of words
    drift: float          # baseline wave amplitude
    curve: float          # baseline curvature over the line
    tilt: float           # degrees
    stroke: int           # pixels added to (or, negative, removed from) the strokes

    @classmethod
    def sample(cls, rng: np.random.Generator, fonts: Sequence[V2Font], p_pen: float) -> "LineWriterStyle":
        pen = bool(rng.random() < p_pen)
        i = int(rng.integers(len(fonts)))
        j = int(rng.integers(len(fonts)))
        mixed = (not pen) and rng.random() < 0.12
        return cls(
            kind="pen" if pen else "font",
            fonts=(i, j) if mixed else (i,),
            mix=float(rng.uniform(0.2, 0.5)) if mixed else 0.0,
            weight=int(rng.integers(350, 701)) if fonts[i].variable else 0,
            pen_seed=int(rng.integers(1 << 31)),
            xh=float(rng.uniform(13.0, 30.0)),
            slant=float(np.clip(rng.normal(0.08, 0.16), -0.3, 0.5)),
            stretch=float(rng.uniform(0.82, 1.2)),
            word_gap=float(rng.uniform(0.5, 1.5)),
            glyph_jitter=float(rng.uniform(0.0, 0.06)),
            word_rotate=float(rng.uniform(0.0, 2.5)),
            word_scale=float(rng.uniform(0.0, 0.08)),
            drift=float(rng.uniform(0.0, 0.2)),
            curve=float(rng.normal(0.0, 0.25)),
            tilt=float(rng.normal(0.0, 0.8)),
            stroke=int(rng.choice([-1, 0, 0, 0, 1, 1, 2])),
        )


@dataclass(frozen=True)
class LineTask:
    index: int
    seed: int
    writer: int
    text: str
    style: LineWriterStyle
    fonts: tuple[V2Font, ...]
    #: Share of lines given one of the Keras augmentation layers (:data:`KERAS_LAYERS`).
    p_keras: float = 0.0

    @property
    def split(self) -> str:
        return line_split(self.writer)


# -- drawing ------------------------------------------------------------------------------------
def _font_word(word: str, font: V2Font, fallback: dict[str, V2Font | None], xh: float, weight: int,
               jitter: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A word drawn glyph by glyph (kerned positions, each glyph with its own size and baseline):
    ink coverage cropped to a padded box and its baseline row."""
    from PIL import Image, ImageDraw

    from htr_tf.data.synth import PRINT_FONT, _pil_font

    size = max(6, int(round(xh / font.x_height)))
    main = _pil_font(font.path, size, weight if font.variable else 0)
    placed = []
    x = 0.0
    for k, ch in enumerate(word):
        f = font if ch not in font.missing else fallback.get(ch)
        s = (1.0 + jitter * rng.standard_normal()) if jitter else 1.0
        if f is None:
            pf = _pil_font(str(PRINT_FONT), max(6, int(round(xh * s / 0.52))))
        else:
            pf = _pil_font(f.path, max(6, int(round(xh * s / f.x_height))), weight if f.variable else 0)
        dy = jitter * xh * rng.standard_normal() * 0.6
        placed.append((x, dy, ch, pf))
        # kerned advance with the word's font; a fallback glyph advances by its own width
        if f is font:
            x += main.getlength(word[:k + 1]) - main.getlength(word[:k])
        else:
            x += pf.getlength(ch)
    pad = int(math.ceil(xh * 2.5)) + 4
    W = int(math.ceil(x)) + 2 * pad
    H = int(math.ceil(xh * 5.0)) + 2 * pad
    img = Image.new("L", (W, H), 0)
    d = ImageDraw.Draw(img)
    base = pad + xh * 3.0
    for gx, dy, ch, pf in placed:
        d.text((pad + gx, base + dy), ch, font=pf, fill=255, anchor="ls")
    return np.asarray(img), base


def _fallback(fonts: Sequence[V2Font], chars: str) -> dict[str, V2Font | None]:
    need = {c for f in fonts for c in f.missing}
    return {c: next((f for f in fonts if c not in f.missing), None) for c in need}


def _affine_word(a: np.ndarray, base: float, slant: float, angle_deg: float, scale: float,
                 stretch: float) -> tuple[np.ndarray, float, float]:
    """Shear/stretch/scale/rotate a word image about its baseline start; returns the image
    cropped to its ink, and the baseline-left anchor in it."""
    import cv2

    h, w = a.shape
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    A = scale * np.array([[c, s], [-s, c]]) @ np.array([[stretch, -slant], [0.0, 1.0]])
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64) - [0, base]
    tc = corners @ A.T
    lo, hi = tc.min(0) - 2, tc.max(0) + 2
    W, H = int(math.ceil(hi[0] - lo[0])) + 1, int(math.ceil(hi[1] - lo[1])) + 1
    M = np.hstack([A, (-lo - A @ np.array([0.0, base]))[:, None]]).astype(np.float32)
    out = cv2.warpAffine(a, M, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)
    x0, y0, cw, chh = cv2.boundingRect((out > 20).astype(np.uint8))
    if cw == 0:
        return out[:1, :1] * 0, 0.0, 0.0
    anchor = -lo  # where (0, base) went
    return out[y0:y0 + chh, x0:x0 + cw], float(anchor[0] - x0), float(anchor[1] - y0)


def _baseline(style: LineWriterStyle, rng: np.random.Generator, width: float):
    ph = rng.uniform(0, 2 * math.pi)
    period = rng.uniform(6.0, 14.0) * style.xh
    slope = math.tan(math.radians(style.tilt))
    curve = style.curve * style.xh

    def y(x: np.ndarray | float) -> Any:
        u = np.asarray(x) / max(width, 1.0)
        return slope * np.asarray(x) + style.drift * style.xh * np.sin(ph + np.asarray(x) / period) + curve * (
            4 * (u - 0.5) ** 2 - 1)

    return y


def _draw_font_line(task: LineTask, rng: np.random.Generator) -> np.ndarray:
    st = task.style
    fonts = task.fonts
    fb = _fallback(fonts, task.text)
    pieces = []  # (alpha, anchor_x, anchor_y)
    for word in task.text.split(" "):
        k = st.fonts[1] if len(st.fonts) > 1 and rng.random() < st.mix else st.fonts[0]
        a, base = _font_word(word, fonts[k], fb, st.xh, st.weight, st.glyph_jitter, rng)
        sc = float(np.clip(1.0 + st.word_scale * rng.standard_normal(), 0.8, 1.25))
        ang = st.word_rotate * rng.uniform(-1, 1)
        sl = st.slant + 0.03 * rng.standard_normal()
        pieces.append(_affine_word(a, base, sl, ang, sc, st.stretch))
    return _assemble(pieces, st, rng)


def _assemble(pieces: list[tuple[np.ndarray, float, float]], st: LineWriterStyle,
              rng: np.random.Generator) -> np.ndarray:
    """Lay word images on a baseline; returns the line's coverage (cropped to ink, unpadded)."""
    gaps = np.clip(st.word_gap * (1 + 0.25 * rng.standard_normal(len(pieces))), 0.3, None) * st.xh
    xs, x = [], 0.0
    for (a, ax, ay), g in zip(pieces, gaps):
        xs.append(x)
        x += a.shape[1] + g
    total = x
    by = _baseline(st, rng, total)
    tops, bottoms = [], []
    ys = []
    for (a, ax, ay), x0 in zip(pieces, xs):
        yb = float(by(x0 + ax))
        y0 = yb - ay
        ys.append(y0)
        tops.append(y0)
        bottoms.append(y0 + a.shape[0])
    top, bottom = min(tops), max(bottoms)
    H = int(math.ceil(bottom - top)) + 2
    W = int(math.ceil(total)) + 2
    canvas = np.zeros((H, W), np.uint8)
    for (a, _, _), x0, y0 in zip(pieces, xs, ys):
        xi, yi = int(round(x0)), int(round(y0 - top))
        h, w = a.shape
        h, w = min(h, H - yi), min(w, W - xi)
        if h > 0 and w > 0:
            np.maximum(canvas[yi:yi + h, xi:xi + w], a[:h, :w], out=canvas[yi:yi + h, xi:xi + w])
    return canvas


def _draw_pen_line(task: LineTask, rng: np.random.Generator) -> np.ndarray:
    from htr_tf.data.strokes import StrokeWriter, draw_stroke_text, render_strokes

    st = task.style
    w = StrokeWriter.sample(np.random.default_rng(st.pen_seed))
    w = _replace(w, slant=st.slant if rng.random() < 0.5 else w.slant)
    words, extents = draw_stroke_text(task.text, w, rng, st.xh)
    total = max(e[1] for e in extents) if extents else 1.0
    by = _baseline(st, rng, total)
    strokes = []
    for ws, (x0, x1) in zip(words, extents):
        ang = math.radians(st.word_rotate * rng.uniform(-1, 1))
        c, s = math.cos(ang), math.sin(ang)
        cx = (x0 + x1) / 2
        dy = float(by(cx))
        R = np.array([[c, -s], [s, c]])
        for p, width in ws:
            q = (p - [cx, 0.0]) @ R.T + [cx, dy]
            strokes.append((q, width))
    allp = np.concatenate([p for p, _ in strokes])
    pad = 3 + max(wd for _, wd in strokes)
    lo = allp.min(0) - pad
    hi = allp.max(0) + pad
    H, W = int(math.ceil(hi[1] - lo[1])) + 1, int(math.ceil(hi[0] - lo[0])) + 1
    strokes = [(p - lo, wd) for p, wd in strokes]
    return render_strokes(strokes, (H, W), rng, w.pressure, supersample=2)


def _replace(obj: Any, **kw: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **kw)


#: Keras 3 augmentation layers applied to some lines' ink (name -> constructor arguments);
#: each call gets a fresh ``SeedGenerator`` seeded from the line's seed, so it is stateless.
#: ``RandomElasticTransform`` is not among them: it sizes its displacement by an image's long side
#: and its smoothing by the short side, so on a line 15-20 times wider than high the smoothing
#: fell below one pixel (a 1x1 kernel) while the displacement reached 20-30 px, each pixel moved
#: on its own and the ink became speckle (synthetic v2 revision 1: 47 of 600 validation lines,
#: read at 29.8 % CER against 6.6 % for lines without a Keras layer).  Its op
#: ``keras.ops.image.elastic_transform`` with sigma and alpha sized to the x-height draws good
#: lines but took 0.3-34 s a line (a 6-sigma 2-D Gaussian kernel), against 19-50 ms for the whole
#: line otherwise; those lines get :func:`htr_tf.data.paper.elastic` instead (:data:`EXTRA_ELASTIC`).
KERAS_LAYERS: dict[str, dict] = {
    "RandomPerspective": {"factor": 1.0, "scale": 0.12, "fill_value": 0.0},
    "RandomShear": {"x_factor": 0.25, "y_factor": 0.03, "fill_mode": "constant", "fill_value": 0.0},
    "RandomRotation": {"factor": 0.006, "fill_mode": "constant", "fill_value": 0.0},
}
#: The elastic distortion drawn in the elastic layer's place (smoothing, displacement: x-heights).
EXTRA_ELASTIC: dict[str, tuple[float, float]] = {"sigma": (0.35, 0.8), "amplitude": (0.03, 0.08)}


@lru_cache(maxsize=None)
def _keras() -> Any:
    """Keras, its TensorFlow kept to one thread: worker processes already share out the cores."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    return keras


@lru_cache(maxsize=None)
def _keras_layer(name: str) -> Any:
    return getattr(_keras().layers, name)(**KERAS_LAYERS[name])


def keras_augment(alpha: np.ndarray, name: str, seed: int) -> np.ndarray:
    """Apply one Keras 3 augmentation layer (:data:`KERAS_LAYERS`) to an ink mask, reproducibly.

    The mask is padded so nothing is pushed out, transformed with the layer's own
    ``get_random_transformation``/``transform_images`` under a fresh ``SeedGenerator(seed)``
    (equal seeds give equal images), and cropped back to its ink.
    """
    if name not in KERAS_LAYERS:
        raise DataError(f"unknown Keras augmentation layer {name!r}; known: {', '.join(KERAS_LAYERS)}")
    keras = _keras()
    layer = _keras_layer(name)
    x = np.pad(alpha, _margin(alpha)).astype(np.float32)[None, :, :, None]
    t = layer.get_random_transformation(x, training=True, seed=keras.random.SeedGenerator(seed))
    y = np.asarray(layer.transform_images(x, t, training=True))[0, :, :, 0]
    return _crop_to_ink(np.clip(np.rint(y), 0, 255).astype(np.uint8), alpha)


def extra_elastic(alpha: np.ndarray, seed: int, xh: float) -> np.ndarray:
    """The elastic distortion some lines get in place of a Keras layer (:data:`EXTRA_ELASTIC`)."""
    from htr_tf.data import paper

    rng = np.random.default_rng([seed, 5])
    sigma = max(1.5, xh * rng.uniform(*EXTRA_ELASTIC["sigma"]))
    amp = xh * rng.uniform(*EXTRA_ELASTIC["amplitude"])
    y = paper.elastic(np.pad(alpha, _margin(alpha)), rng, sigma=sigma, amp=amp)
    return _crop_to_ink(y, alpha)


def _margin(alpha: np.ndarray) -> int:
    return int(0.3 * alpha.shape[0]) + 2


def _crop_to_ink(y: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(y > 20)
    if len(ys) == 0:
        return fallback
    return np.ascontiguousarray(y[ys.min():ys.max() + 1, xs.min():xs.max() + 1])


def render_line(task: LineTask) -> tuple[np.ndarray, dict]:
    """Draw one line: returns (gray uint8 image, what was drawn)."""
    from htr_tf.data import paper

    rng = np.random.default_rng([task.seed, 12, task.index])
    st = task.style
    alpha = _draw_pen_line(task, rng) if st.kind == "pen" else _draw_font_line(task, rng)
    info: dict[str, Any] = {"kind": st.kind}
    alpha = paper.stroke_width(alpha, st.stroke)
    k = rng.random()
    if k < task.p_keras:
        # draw 0 was Keras' RandomElasticTransform until revision 2 (see KERAS_LAYERS)
        pick = int(rng.integers(len(KERAS_LAYERS) + 1))
        seed = int(rng.integers(1 << 31))
        if pick == 0:
            alpha = extra_elastic(alpha, seed, st.xh)
            info["extra_elastic"] = True
        else:
            name = list(KERAS_LAYERS)[pick - 1]
            alpha = keras_augment(alpha, name, seed)
            info["keras"] = name
    # margins around the ink (kept by the warps below), then neighbours' ink at the edges
    xh = st.xh
    m = [int(rng.uniform(0.1, 1.2) * xh) + 2, int(rng.uniform(0.1, 1.2) * xh) + 2,
         int(rng.uniform(0.2, 1.5) * xh) + 2, int(rng.uniform(0.2, 1.5) * xh) + 2]  # top bottom left right
    a = np.pad(alpha, ((m[0], m[1]), (m[2], m[3])))
    h, w = a.shape
    if rng.random() < 0.25:
        # a neighbour line sits about one ink height away: only its descenders (above) or
        # ascenders (below) reach into this crop, as in crops cut from a page
        pitch = max(int(alpha.shape[0] * rng.uniform(0.85, 1.15)), 1)
        for sign in (-1, 1):
            if rng.random() < 0.6:
                dx = int(rng.integers(-w // 2, w // 2 + 1))
                shifted = np.zeros_like(a)
                src = np.roll(a, dx, axis=1)
                if sign < 0 and pitch < h:
                    shifted[:h - pitch] = src[pitch:]
                elif pitch < h:
                    shifted[pitch:] = src[:h - pitch]
                np.maximum(a, shifted, out=a)
                info["neighbours"] = True
    r = rng.random()
    if r < 0.4:
        a = paper.warp_grid(a, rng, cell=xh * rng.uniform(1.0, 2.5), sd=xh * rng.uniform(0.03, 0.1))
        info["grid_warp"] = True
    elif r < 0.6:
        a = paper.elastic(a, rng, sigma=xh * rng.uniform(0.3, 0.8), amp=xh * rng.uniform(0.03, 0.08))
        info["elastic"] = True
    baseline_row = m[0] + alpha.shape[0] * 0.62
    bleed = np.roll(a, int(rng.integers(0, w)), axis=1)
    gray, pinfo = paper.ink_on_paper(a, rng, xh, baseline_row, bleed=bleed)
    gray, sinfo = paper.scan(gray, rng, xh)
    info.update(pinfo)
    info.update(sinfo)
    return gray, info


# -- words for IAM-format forms ------------------------------------------------------------------
def form_word_drawer(task: Any, style: Any) -> Any:
    """``draw(word, rng) -> synth._Ink`` for a v2 form (:class:`htr_tf.data.synth.PageTask`
    with ``version=2``): the page's writer is a v2 font or pen writer, at the v1 writer's
    size, slant and ink so the form layout stays IAM's."""
    from htr_tf.data.strokes import StrokeWriter, covers, draw_stroke_text, load_stroke_font, render_strokes
    from htr_tf.data.synth import _MIN_ALPHA, _Ink

    fonts = task.fonts
    v2 = LineWriterStyle.sample(np.random.default_rng([task.seed, 11, task.writer]), fonts, task.p_pen)
    xh = style.x_height * task.scale
    fb = _fallback(fonts, "")
    pen_writer = StrokeWriter.sample(np.random.default_rng(v2.pen_seed)) if v2.kind == "pen" else None
    if pen_writer is not None:
        pen_writer = _replace(pen_writer, slant=style.slant)
        pen_font = load_stroke_font(pen_writer.font)

    def crop(a: np.ndarray, ax: float, ay: float, word: str) -> _Ink:
        import cv2

        a = cv2.threshold(a, _MIN_ALPHA - 1, 255, cv2.THRESH_TOZERO)[1]
        x0, y0, cw, ch = cv2.boundingRect(a)
        if cw == 0 or ch == 0:
            raise DataError(f"word {word!r} drew no ink")
        ink = int(np.clip(style.ink + np.random.default_rng(len(word)).normal(0, 3), 0, 100))
        return _Ink(np.ascontiguousarray(a[y0:y0 + ch, x0:x0 + cw]), ax - x0, ay - y0, ink)

    def draw(word: str, rng: np.random.Generator) -> Any:
        if pen_writer is not None and not covers(pen_font, word):
            words, _ = draw_stroke_text(word, pen_writer, rng, xh)
            st = words[0]
            pts = np.concatenate([p for p, _ in st])
            pad = 3 + max(w for _, w in st)
            lo, hi = pts.min(0) - pad, pts.max(0) + pad
            H, W = int(math.ceil(hi[1] - lo[1])) + 1, int(math.ceil(hi[0] - lo[0])) + 1
            a = render_strokes([(p - lo, w) for p, w in st], (H, W), rng, pen_writer.pressure)
            return crop(a, float(-lo[0]), float(-lo[1]), word)
        k = v2.fonts[1] if len(v2.fonts) > 1 and rng.random() < v2.mix else v2.fonts[0]
        a, base = _font_word(word, fonts[k], fb, xh, v2.weight, v2.glyph_jitter, rng)
        a, ax, ay = _affine_word(a, base, style.slant + 0.03 * rng.standard_normal(),
                                 v2.word_rotate * rng.uniform(-1, 1),
                                 float(np.clip(1.0 + v2.word_scale * rng.standard_normal(), 0.8, 1.25)),
                                 style.stretch)
        return crop(a, ax, ay, word)

    return draw


# -- text --------------------------------------------------------------------------------------
def _english_line(rng: np.random.Generator, sentences: Sequence[str], target: int) -> str:
    i = int(rng.integers(len(sentences)))
    words: list[str] = []
    while sum(len(x) + 1 for x in words) < target + 40 and len(words) < 200:
        words += sentences[i % len(sentences)].split()
        i += 1
    start = int(rng.integers(0, max(1, len(words) // 3)))
    out: list[str] = []
    for wd in words[start:]:
        if out and sum(len(x) + 1 for x in out) + len(wd) > target:
            break
        out.append(wd)
    return " ".join(out)


def _tasks(lines: int, seed: int, start: int, fonts: tuple[V2Font, ...], charset: Charset,
           lines_per_writer: int, p_french: float, p_pen: float, sentences: Sequence[str],
           p_keras: float = 0.0) -> Iterator[LineTask]:
    from htr_tf.data.french import french_line
    from htr_tf.data.strokes import StrokeWriter, covers, load_stroke_font

    allowed = set(charset.chars)
    for index in range(start, start + lines):
        writer = index // lines_per_writer
        style = LineWriterStyle.sample(np.random.default_rng([seed, 11, writer]), fonts, p_pen)
        rng = np.random.default_rng([seed, 13, index])
        target = int(rng.integers(6, 30)) if rng.random() < 0.25 else int(rng.integers(30, 80))
        text = ""
        for _ in range(5):
            if rng.random() < p_french:
                text = french_line(rng, target, allowed)
            else:
                text = _english_line(rng, sentences, target)
            text = charset.normalize(text)
            if text and not charset.unknown(text):
                break
        if not text or charset.unknown(text):
            text = "le texte"
        if style.kind == "pen":
            font = load_stroke_font(StrokeWriter.sample(np.random.default_rng(style.pen_seed)).font)
            lacking = covers(font, text)
            if lacking:  # a character no stroke glyph has: this line is drawn with fonts
                style = _replace(style, kind="font")
        yield LineTask(index=index, seed=seed, writer=writer, text=text, style=style, fonts=fonts,
                       p_keras=p_keras)


def _render_task(task: LineTask) -> tuple[LineTask, bytes, int, int, dict]:
    from htr_tf.fileio import encode_png

    img, info = render_line(task)
    return task, encode_png(img), int(img.shape[0]), int(img.shape[1]), info


def _render_all(tasks: Iterator[LineTask], workers: int) -> Iterator[tuple[LineTask, bytes, int, int, dict]]:
    if workers == 1:
        for t in tasks:
            yield _render_task(t)
        return
    import multiprocessing as mp
    from collections import deque

    from htr_tf.data.synth import _init_worker

    with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        pending: deque = deque()
        for t in tasks:
            pending.append(pool.apply_async(_render_task, (t,)))
            if len(pending) >= 16 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def synthesize_lines(out: str | os.PathLike, lines: int, seed: int = 0, workers: int = 1,
                     fonts_dir: str | os.PathLike | None = None, system_fonts: bool = True,
                     text: str | os.PathLike | None = None, lines_per_writer: int = 20,
                     p_french: float = 0.5, p_pen: float = 0.35, start: int = 0,
                     per_shard: int = 2000, progress: bool = True, p_keras: float = 0.25) -> dict:
    """Write ``lines`` synthetic lines as a line record set at ``out``; returns a summary.

    ``p_french``: share of French lines (the rest English); ``p_pen``: share of writers drawn
    by the stroke simulator (the rest by fonts); ``p_keras``: share of lines also given one of
    Keras 3's augmentation layers (perspective, shear, rotation) or, a quarter of them, one more
    elastic distortion (:func:`extra_elastic`); ``lines_per_writer`` consecutive lines share
    a writer.  ``fonts_dir`` replaces the font sources by one directory; ``system_fonts=False``
    keeps only the bundled fonts.  ``workers > 1`` renders in that many processes with the
    same result.
    """
    from tqdm import tqdm

    from htr_tf.data.records import LineExample, RecordSetWriter
    from htr_tf.data.text import load_sentences

    if lines < 1:
        raise DataError(f"lines must be at least 1, got {lines}")
    if workers < 1 or lines_per_writer < 1 or seed < 0 or start < 0:
        raise DataError("workers and lines_per_writer must be >= 1, seed and start >= 0")
    for name, p in (("p_french", p_french), ("p_pen", p_pen), ("p_keras", p_keras)):
        if not 0.0 <= p <= 1.0:
            raise DataError(f"{name} must be in [0, 1], got {p}")
    charset = synth_charset()
    fonts = load_v2_fonts(fonts_dir, system_fonts, charset)
    sentences = load_sentences(text)
    t0 = time.perf_counter()
    kinds: dict[str, int] = {}
    info = {"synth_version": SYNTH_LINES_VERSION, "synth_revision": SYNTH_LINES_REVISION, "seed": seed,
            "start": start, "lines": lines, "lines_per_writer": lines_per_writer, "p_french": p_french,
            "p_pen": p_pen, "p_keras": p_keras,
            "fonts": [f"{f.name} ({f.origin})" for f in fonts],
            "text": str(text) if text is not None else "bundled Brown extract + French word list"}
    tasks = _tasks(lines, seed, start, fonts, charset, lines_per_writer, p_french, p_pen, sentences, p_keras)
    with RecordSetWriter(out, source="synth-v2", charset=charset, per_shard=per_shard, info=info) as w:
        for task, png, h, wd, _ in tqdm(_render_all(tasks, workers), total=lines, desc="synth lines",
                                        unit="line", disable=not progress):
            ids = charset.encode(task.text)
            w.add_line(task.split, LineExample(
                id=f"v2-{task.index:08d}", image_png=png, height=h, width=wd, text=task.text, ids=ids,
                form_id=f"v2w{task.writer:06d}", writer=f"v2w{task.writer:06d}", source="synth-v2"))
            kinds[task.style.kind] = kinds.get(task.style.kind, 0) + 1
        counts = w.counts().get("lines", {})
    secs = time.perf_counter() - t0
    return {"lines": lines, "splits": dict(sorted(counts.items())), "writers": kinds,
            "seconds": round(secs, 3), "lines_per_s": round(lines / secs, 2) if secs else None,
            "fonts": len(fonts)}


def stale_revision_note(manifest: dict) -> str | None:
    """What is wrong with a synthetic v2 line set an older generator revision drew, or None."""
    if manifest.get("source") != "synth-v2":
        return None
    made = int((manifest.get("info") or {}).get("synth_revision", 1))
    if made >= SYNTH_LINES_REVISION:
        return None
    return (f"drawn by synthetic v2 revision {made}, before revision {SYNTH_LINES_REVISION}: a sixteenth of "
            "its lines went through Keras' RandomElasticTransform and are speckle, often past reading "
            "(docs/synthetic-data.md); draw it again (training/make_records.sh does)")


def describe(task: LineTask) -> str:
    """One line of text saying how a line was drawn (contact sheets, debugging)."""
    st = task.style
    if st.kind == "pen":
        from htr_tf.data.strokes import StrokeWriter

        return f"pen:{StrokeWriter.sample(np.random.default_rng(st.pen_seed)).font}"
    return "font:" + "+".join(task.fonts[i].name for i in st.fonts)


def iter_line_tasks(lines: int, seed: int = 0, start: int = 0, lines_per_writer: int = 20,
                    p_french: float = 0.5, p_pen: float = 0.35, system_fonts: bool = True,
                    p_keras: float = 0.25) -> Iterator[LineTask]:
    """The tasks :func:`synthesize_lines` renders (for pictures and benchmarks)."""
    from htr_tf.data.text import load_sentences

    cs = synth_charset()
    fonts = load_v2_fonts(None, system_fonts, cs)
    return _tasks(lines, seed, start, fonts, cs, lines_per_writer, p_french, p_pen, load_sentences(), p_keras)


def contact_sheet(path: str | os.PathLike, lines: int = 48, seed: int = 0, columns: int = 2,
                  row_height: int = 64, column_width: int = 900, system_fonts: bool = True) -> dict:
    """Write a PNG of ``lines`` v2 lines, each by a different writer, in ``columns`` columns.

    Each line keeps its aspect ratio at ``row_height`` pixels (narrower if it is wider than
    the column).  Returns how many lines each kind of writer drew.
    """
    import cv2

    from htr_tf.fileio import write_png

    imgs, kinds = [], {}
    for t in iter_line_tasks(lines, seed=seed, lines_per_writer=1, system_fonts=system_fonts):
        img, _ = render_line(t)
        h, w = img.shape
        s = min(row_height / h, column_width / w)
        imgs.append(cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA))
        kinds[t.style.kind] = kinds.get(t.style.kind, 0) + 1
    rows = math.ceil(len(imgs) / columns)
    gap = 6
    sheet = np.full((rows * (row_height + gap) + gap, columns * (column_width + gap) + gap), 96, np.uint8)
    for k, im in enumerate(imgs):
        r, c = k % rows, k // rows
        y, x = gap + r * (row_height + gap), gap + c * (column_width + gap)
        sheet[y:y + im.shape[0], x:x + im.shape[1]] = im
    write_png(path, sheet)
    return kinds


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="contact sheet of synthetic v2 lines")
    ap.add_argument("out")
    ap.add_argument("--lines", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(contact_sheet(a.out, a.lines, a.seed, row_height=52, column_width=760))
