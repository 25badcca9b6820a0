"""Output writers: plain text, JSON, PAGE-XML (PAGE 2019) and overlay pictures of a page result.

Every writer takes the same :class:`~htr_tf.results.PageResult`, so the formats never
disagree.  PAGE-XML follows the PRImA schema of 2019-07-15: one ``TextRegion`` per region,
``TextLine`` with ``Coords`` (a box as a 4-point polygon), ``Baseline`` (the box's bottom
edge, as transcription tools expect one), ``Word`` elements and ``TextEquiv``/``Unicode``
with ``conf``.  Coordinates are integers in page pixels.

>>> from htr_tf.results import PageResult
>>> to_text(PageResult(width=10, height=10))
''
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any, Sequence
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from htr_tf.results import Box, PageResult

__all__ = ["FORMATS", "SUFFIXES", "to_text", "to_json", "to_page_xml", "render", "draw_overlay",
           "write_overlay", "PAGE_NS"]

PAGE_NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
_SCHEMA = f"{PAGE_NS} {PAGE_NS}/pagecontent.xsd"

#: Output formats by name, and the file suffix each is written with.
FORMATS = ("text", "json", "page-xml")
SUFFIXES = {"text": ".txt", "json": ".json", "page-xml": ".xml"}


def to_text(page: PageResult) -> str:
    """The page's text: one line per text line (regions separated by a blank line)."""
    return page.text


def to_json(page: PageResult, chars: bool = False, indent: int | None = None) -> str:
    """The page as JSON (``chars=True`` adds per-character confidences and boxes)."""
    return json.dumps(page.to_dict(chars=chars), ensure_ascii=False, indent=indent)


def _points(box: Box | None, width: int, height: int) -> str:
    if box is None:
        box = (0.0, 0.0, float(width), float(height))
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, x1 = max(0, min(x0, width)), max(0, min(x1, width))
    y0, y1 = max(0, min(y0, height)), max(0, min(y1, height))
    return f"{x0},{y0} {x1},{y0} {x1},{y1} {x0},{y1}"


def _text_equiv(text: str, conf: float, pad: str) -> str:
    c = min(max(float(conf), 0.0), 1.0)
    return (f'{pad}<TextEquiv conf="{c:.4f}">\n{pad}  <Unicode>{escape(text)}</Unicode>\n'
            f"{pad}</TextEquiv>\n")


def to_page_xml(page: PageResult, image_filename: str | None = None, creator: str = "htr-tf") -> str:
    """The page as a PAGE-XML 2019 document (``image_filename`` goes into ``Page/@imageFilename``)."""
    from htr_tf import __version__

    now = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    w, h = page.width, page.height
    name = image_filename if image_filename is not None else (page.id or "page.png")
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n',
           f'<PcGts xmlns="{PAGE_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
           f'xsi:schemaLocation="{_SCHEMA}">\n',
           f"  <Metadata>\n    <Creator>{escape(creator)} {escape(__version__)}</Creator>\n"
           f"    <Created>{now}</Created>\n    <LastChange>{now}</LastChange>\n  </Metadata>\n",
           f'  <Page imageFilename={quoteattr(os.path.basename(str(name)))} imageWidth="{w}" imageHeight="{h}">\n']
    if page.regions:
        out.append('    <ReadingOrder>\n      <OrderedGroup id="ro1" caption="Regions reading order">\n')
        for i, rid in enumerate(r.id or f"r{i + 1}" for i, r in enumerate(page.regions)):
            out.append(f'        <RegionRefIndexed index="{i}" regionRef={quoteattr(rid)}/>\n')
        out.append("      </OrderedGroup>\n    </ReadingOrder>\n")
    for i, region in enumerate(page.regions):
        rid = region.id or f"r{i + 1}"
        out.append(f'    <TextRegion id={quoteattr(rid)} type="paragraph">\n'
                   f'      <Coords points="{_points(region.box, w, h)}"/>\n')
        for j, line in enumerate(region.lines):
            lid = line.id or f"{rid}l{j + 1}"
            out.append(f'      <TextLine id={quoteattr(lid)}>\n'
                       f'        <Coords points="{_points(line.box, w, h)}"/>\n')
            if line.box is not None:
                x0, _, x1, y1 = (int(round(v)) for v in line.box)
                out.append(f'        <Baseline points="{x0},{y1} {x1},{y1}"/>\n')
            for k, word in enumerate(line.words):
                if word.box is None:
                    continue
                out.append(f'        <Word id={quoteattr(f"{lid}w{k + 1}")}>\n'
                           f'          <Coords points="{_points(word.box, w, h)}"/>\n')
                out.append(_text_equiv(word.text, word.confidence, "          "))
                out.append("        </Word>\n")
            out.append(_text_equiv(line.text, line.confidence, "        "))
            out.append("      </TextLine>\n")
        out.append(_text_equiv(region.text, _mean_conf(region.lines), "      "))
        out.append("    </TextRegion>\n")
    out.append("  </Page>\n</PcGts>\n")
    return "".join(out)


def _mean_conf(lines: Sequence[Any]) -> float:
    return float(np.mean([ln.confidence for ln in lines])) if lines else 0.0


def render(page: PageResult, fmt: str, image_filename: str | None = None) -> str:
    """The page in ``fmt`` (one of :data:`FORMATS`), ending with a newline."""
    if fmt == "text":
        s = to_text(page)
    elif fmt == "json":
        s = to_json(page)
    elif fmt == "page-xml":
        return to_page_xml(page, image_filename)
    else:
        from htr_tf.errors import ConfigError

        raise ConfigError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return s + "\n" if s else s


# -- overlay pictures -------------------------------------------------------------------------------
_AREA = (200, 120, 0)      # BGR: blue-ish for the handwritten area
_LINE = (0, 140, 255)      # orange line boxes
_TEXT = (20, 20, 200)      # red recognised text


def draw_overlay(gray: np.ndarray, page: PageResult, max_side: int = 2400) -> np.ndarray:
    """A BGR picture of the page with the area, line boxes and recognised text drawn on it.

    Large pages are scaled down to ``max_side`` pixels; the text of each line is written
    just above its box, on a light band so it reads on any background.
    """
    import cv2

    img = cv2.cvtColor(np.asarray(gray, np.uint8), cv2.COLOR_GRAY2BGR)
    s = min(1.0, max_side / max(img.shape[:2]))
    if s < 1.0:
        img = cv2.resize(img, (max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))),
                         interpolation=cv2.INTER_AREA)
    thick = max(1, int(round(2 * max(img.shape[:2]) / 2400)))

    def pt(x: float, y: float) -> tuple[int, int]:
        return int(round(x * s)), int(round(y * s))

    for region in page.regions:
        if region.box is not None:
            cv2.rectangle(img, pt(*region.box[:2]), pt(*region.box[2:]), _AREA, thick + 1)
        for line in region.lines:
            if line.box is None:
                continue
            x0, y0, x1, y1 = line.box
            cv2.rectangle(img, pt(x0, y0), pt(x1, y1), _LINE, thick)
            text = line.text.encode("ascii", "replace").decode("ascii")
            if not text:
                continue
            line_h = max(8.0, (y1 - y0) * s)
            scale = max(0.3, min(2.0, 0.35 * line_h / 22.0))
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            ox, oy = pt(x0, y0)
            oy = max(th + 2, oy - 2)
            band = img[max(0, oy - th - 2): oy + base, ox: ox + tw]
            band[:] = (0.35 * band + 0.65 * 255).astype(np.uint8)
            cv2.putText(img, text, (ox, oy), cv2.FONT_HERSHEY_SIMPLEX, scale, _TEXT, 1, cv2.LINE_AA)
    return img


def write_overlay(path: str | os.PathLike, gray: np.ndarray, page: PageResult, max_side: int = 2400) -> None:
    """Write :func:`draw_overlay` as a PNG, atomically."""
    import cv2

    from htr_tf.errors import DataError
    from htr_tf.fileio import atomic_write_bytes

    ok, buf = cv2.imencode(".png", draw_overlay(gray, page, max_side))
    if not ok:
        raise DataError(f"{path}: could not encode the overlay PNG")
    atomic_write_bytes(path, buf.tobytes())
