"""Ink on paper, then the scanner: the photometric half of synthetic line images (numpy + OpenCV).

:func:`ink_on_paper` lays an ink coverage mask (0-255) on a sheet: textured paper of a
random tint, ruled or squared (Seyès) lines, stains, uneven light, bleed-through of the
other side, in an ink colour (black, blue, sepia, pencil, ...), and renders it to gray as
a scanner would; :func:`scan` then blurs, adds noise, JPEG-compresses or binarises.  Every
choice comes from the ``rng`` given, so equal seeds give equal images.

Geometry that moves ink (grid warp, elastic, stroke width) is in :func:`warp_grid`,
:func:`elastic` and :func:`stroke_width`, applied to the mask before the paper.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ink_on_paper", "scan", "warp_grid", "elastic", "stroke_width", "INKS"]

#: Ink colours, RGB 0-1, with how often each is drawn.
INKS: dict[str, tuple[tuple[float, float, float], float]] = {
    "black": ((0.05, 0.05, 0.07), 0.3),
    "blue-black": ((0.08, 0.1, 0.25), 0.15),
    "blue": ((0.1, 0.2, 0.6), 0.2),
    "sepia": ((0.3, 0.2, 0.1), 0.1),
    "faded-brown": ((0.45, 0.33, 0.2), 0.07),
    "pencil": ((0.35, 0.35, 0.37), 0.12),
    "red": ((0.6, 0.1, 0.1), 0.02),
    "green": ((0.1, 0.35, 0.15), 0.02),
    "violet": ((0.3, 0.15, 0.45), 0.02),
}


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth noise, unit std-ish, with features about ``cell`` pixels wide."""
    import cv2

    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    g = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)


def warp_grid(alpha: np.ndarray, rng: np.random.Generator, cell: float, sd: float) -> np.ndarray:
    """Random grid warp (Wigington et al., ICDAR 2017): control points every ``cell``
    pixels moved by N(0, ``sd``), the displacement interpolated between them."""
    import cv2

    h, w = alpha.shape
    gh, gw = max(2, int(math.ceil(h / cell)) + 1), max(2, int(math.ceil(w / cell)) + 1)
    d = (rng.standard_normal((gh, gw, 2)) * sd).astype(np.float32)
    d = cv2.resize(d, (w, h), interpolation=cv2.INTER_LINEAR)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(alpha, xs + d[..., 0], ys + d[..., 1], cv2.INTER_LINEAR, borderValue=0)


def elastic(alpha: np.ndarray, rng: np.random.Generator, sigma: float, amp: float) -> np.ndarray:
    """Elastic distortion (Simard et al. 2003): a random field smoothed over ``sigma`` pixels."""
    import cv2

    h, w = alpha.shape
    dx = _smooth_noise(rng, h, w, sigma) * amp
    dy = _smooth_noise(rng, h, w, sigma) * amp
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(alpha, xs + dx, ys + dy, cv2.INTER_LINEAR, borderValue=0)


def stroke_width(alpha: np.ndarray, px: int) -> np.ndarray:
    """Thicker (``px`` > 0, dilate) or thinner (``px`` < 0, erode) strokes."""
    import cv2

    if px == 0:
        return alpha
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (abs(px) + 1, abs(px) + 1))
    return cv2.dilate(alpha, k) if px > 0 else cv2.erode(alpha, k)


def _pick_ink(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    names = list(INKS)
    p = np.array([INKS[n][1] for n in names])
    n = names[int(rng.choice(len(names), p=p / p.sum()))]
    c = np.array(INKS[n][0]) * rng.uniform(0.75, 1.2) + rng.normal(0, 0.02, 3)
    return n, np.clip(c, 0, 1).astype(np.float32)


def ink_on_paper(alpha: np.ndarray, rng: np.random.Generator, xh: float, baseline: float,
                 bleed: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Gray uint8 image of ink coverage ``alpha`` on a random sheet; and what was drawn.

    ``xh`` (x-height, pixels) and ``baseline`` (row) place ruled lines like real ones;
    ``bleed`` is another coverage mask of the same shape to show through from the back.
    """
    import cv2

    h, w = alpha.shape
    info: dict = {}
    # paper tint: white, cream, yellowed, gray, bluish
    tint = np.array([[1.0, 1.0, 1.0], [0.98, 0.96, 0.9], [0.93, 0.87, 0.72], [0.88, 0.88, 0.87],
                     [0.94, 0.96, 0.99]][int(rng.choice(5, p=[0.35, 0.25, 0.15, 0.15, 0.1]))], np.float32)
    tint = np.clip(tint * rng.uniform(0.85, 1.02) + rng.normal(0, 0.015, 3), 0, 1).astype(np.float32)
    paper = np.ones((h, w, 3), np.float32) * tint
    # texture: low-frequency mottling and fibres
    tex = rng.uniform(0.0, 0.05)
    if tex > 0.005:
        m = _smooth_noise(rng, h, w, rng.uniform(8, 40)) * tex
        m += _smooth_noise(rng, h, w, 2.0) * tex * 0.4
        paper *= (1.0 + m)[..., None]
    # ruled lines: plain ruling near the baseline, or Seyès (French school) ruling
    r = rng.random()
    if r < 0.35:
        kind = "seyes" if r < 0.12 else "ruled"
        info["ruling"] = kind
        col = np.array([[0.55, 0.65, 0.85], [0.6, 0.6, 0.6], [0.8, 0.5, 0.6]][int(rng.integers(3))], np.float32)
        strength = rng.uniform(0.25, 0.8)
        if kind == "ruled":
            pitch = xh * rng.uniform(2.6, 4.0)
            ys = baseline + rng.normal(0, 0.12) * xh + pitch * np.arange(-3, 4)
            thick = 1
        else:
            pitch = xh * rng.uniform(0.85, 1.1) / 1.0  # Seyès: 4 lines per 8 mm, x-height ~ one interval
            ys = baseline + rng.normal(0, 0.08) * xh + pitch * np.arange(-8, 9)
            thick = 1
        mask = np.zeros((h, w), np.uint8)
        for k, y in enumerate(ys):
            if 0 <= y < h:
                yy = int(round(y + rng.normal(0, 0.3)))
                heavy = kind == "ruled" or k % 4 == 0
                cv2.line(mask, (0, yy), (w - 1, yy), 255 if heavy else 150, thick, cv2.LINE_AA)
        if kind == "seyes" and rng.random() < 0.5:
            step = int(pitch * 4)
            for x in range(int(rng.integers(0, step)), w, step):
                cv2.line(mask, (x, 0), (x, h - 1), 150, 1, cv2.LINE_AA)
        a = (mask.astype(np.float32) / 255.0 * strength)[..., None]
        paper = paper * (1 - a) + col * a * paper
    # stains: soft darker blobs with a brownish tint
    for _ in range(int(rng.poisson(0.4))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.2, 1.5) * h, rng.uniform(0.05, 0.4) * w
        yy, xx = np.ogrid[0:h, 0:w]
        d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        blob = np.exp(-d * rng.uniform(1.0, 3.0)).astype(np.float32) * rng.uniform(0.05, 0.25)
        stain = np.array([0.85, 0.75, 0.55], np.float32)
        paper = paper * (1 - blob[..., None]) + paper * stain * blob[..., None]
        info["stains"] = info.get("stains", 0) + 1
    # bleed-through: the back side's ink, mirrored and blurred, faint
    if bleed is not None and rng.random() < 0.2:
        b = cv2.GaussianBlur(bleed[:, ::-1].astype(np.float32) / 255.0, (0, 0), rng.uniform(0.8, 2.0))
        paper *= (1.0 - b * rng.uniform(0.08, 0.25))[..., None]
        info["bleed"] = True
    # the ink
    name, ink = _pick_ink(rng)
    info["ink"] = name
    a = alpha.astype(np.float32) / 255.0
    if name == "pencil":
        a = a * rng.uniform(0.55, 0.85) * (1.0 + 0.15 * _smooth_noise(rng, h, w, 1.5))
    else:
        a = a * rng.uniform(0.85, 1.0)
    a = np.clip(a, 0, 1)[..., None]
    img = paper * (1 - a) + ink * a * (0.7 + 0.3 * paper)  # ink is darker on darker paper
    # uneven light: a gradient over the line, sometimes a shadow at one side
    if rng.random() < 0.5:
        ang = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = (math.cos(ang) * xx / max(w, 1) + math.sin(ang) * yy / max(h, 1))
        ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
        img *= (1.0 - rng.uniform(0.05, 0.35) * ramp)[..., None]
        info["light"] = True
    gray = cv2.cvtColor(np.clip(img * 255.0, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    return gray, info


def scan(gray: np.ndarray, rng: np.random.Generator, xh: float = 20.0) -> tuple[np.ndarray, dict]:
    """Scanner and camera effects on a gray line: blur, noise, contrast, JPEG, binarisation.

    ``xh`` (x-height in pixels) sizes the neighbourhood of adaptive binarisation."""
    import cv2

    info: dict = {}
    x = gray
    if rng.random() < 0.5:
        s = rng.uniform(0.3, 1.2)
        x = cv2.GaussianBlur(x, (0, 0), s)
        info["blur"] = round(float(s), 2)
    if rng.random() < 0.3:  # contrast / gamma of a cheap scanner or a photo
        g = rng.uniform(0.6, 1.6)
        lut = np.clip(255.0 * (np.arange(256) / 255.0) ** g, 0, 255).astype(np.uint8)
        x = cv2.LUT(x, lut)
    if rng.random() < 0.45:
        sd = rng.uniform(2.0, 12.0)
        x = np.clip(x.astype(np.float32) + rng.normal(0, sd, x.shape).astype(np.float32), 0, 255).astype(np.uint8)
        info["noise"] = round(float(sd), 1)
    r = rng.random()
    if r < 0.08:  # binarised (a bitonal scan, or a binarised data set)
        x = cv2.GaussianBlur(x, (0, 0), 0.7)  # a binariser sees a smoothed scan
        if rng.random() < 0.6:
            _, x = cv2.threshold(x, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        else:
            block = int(xh * rng.uniform(1.5, 3.0)) | 1
            x = cv2.adaptiveThreshold(x, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY, max(block, 3),
                                      int(rng.integers(8, 25)))
        info["binarised"] = True
    elif r < 0.45:
        q = int(rng.integers(15, 90))
        ok, enc = cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            x = cv2.imdecode(enc, cv2.IMREAD_GRAYSCALE)
            info["jpeg"] = q
    return x, info
