"""Output writers: plain text, JSON, PAGE-XML (PAGE 2019), ALTO v4 and overlay pictures of a page.

Every writer takes the same :class:`~htr_tf.results.PageResult`, so the formats never
disagree, and :data:`FORMAT_REGISTRY` is the one list of them (name, file suffix, writer):
``htr ocr --format`` and every batch command take their choices from it.

* PAGE-XML follows the PRImA schema of 2019-07-15 as kraken and eScriptorium write it: a
  ``ReadingOrder``, one ``TextRegion`` per region (``Coords`` its polygon, ``custom``
  ``structure {type:handwritten;}`` or ``printed``, and ``production="printed"`` for printed
  text), ``TextLine`` with ``Coords`` (the line polygon, else its box), ``Baseline`` (the
  detected baseline, else the box's bottom edge), ``Word`` elements and
  ``TextEquiv``/``Unicode`` with ``conf``.
* ALTO follows ``alto-4-2.xsd`` as eScriptorium/kraken export it: ``Tags/OtherTag`` block
  and line types referenced by ``TAGREFS``, ``TextBlock`` and ``TextLine`` with
  ``HPOS/VPOS/WIDTH/HEIGHT``, ``Shape/Polygon`` and ``BASELINE`` (``"x1 y1 x2 y2 ..."``),
  one ``String`` per word (``WC`` its confidence) with ``SP`` between words.

Both are validated against the official XSDs in the tests.  Coordinates are integers in
page pixels, clipped to the page.

>>> from htr_tf.results import PageResult
>>> to_text(PageResult(width=10, height=10))
''
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Sequence
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from htr_tf.results import Box, PageResult, Points

__all__ = ["FORMATS", "SUFFIXES", "FORMAT_REGISTRY", "OutputFormat", "to_text", "to_json", "to_page_xml",
           "to_alto", "render", "draw_overlay", "write_overlay", "PAGE_NS", "ALTO_NS"]

PAGE_NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
_SCHEMA = f"{PAGE_NS} {PAGE_NS}/pagecontent.xsd"
ALTO_NS = "http://www.loc.gov/standards/alto/ns-v4#"
_ALTO_SCHEMA = f"{ALTO_NS} http://www.loc.gov/standards/alto/v4/alto-4-2.xsd"


def to_text(page: PageResult) -> str:
    """The page's text: one line per text line (regions separated by a blank line)."""
    return page.text


def to_json(page: PageResult, chars: bool = False, indent: int | None = None) -> str:
    """The page as JSON (``chars=True`` adds per-character confidences and boxes)."""
    return json.dumps(page.to_dict(chars=chars), ensure_ascii=False, indent=indent)


# -- geometry as the XML formats want it ---------------------------------------------------------
def _clip_points(points: Sequence[tuple[float, float]], width: int, height: int) -> list[tuple[int, int]]:
    """Integer points clipped to the page, consecutive duplicates dropped."""
    out: list[tuple[int, int]] = []
    for x, y in points:
        p = (max(0, min(int(round(x)), width)), max(0, min(int(round(y)), height)))
        if not out or out[-1] != p:
            out.append(p)
    if len(out) > 1 and out[0] == out[-1]:
        out.pop()
    return out


def _box_polygon(box: Box | None, width: int, height: int) -> list[tuple[int, int]]:
    if box is None:
        box = (0.0, 0.0, float(width), float(height))
    x0, y0, x1, y1 = box
    return _clip_points([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], width, height)


def _outline(polygon: Points | None, box: Box | None, width: int, height: int) -> list[tuple[int, int]]:
    """The polygon (>= 3 distinct points after rounding), else the box as a polygon."""
    if polygon is not None:
        pts = _clip_points(polygon, width, height)
        if len(set(pts)) >= 3:
            return pts
    return _box_polygon(box, width, height)


def _baseline(line: Any, width: int, height: int) -> list[tuple[int, int]] | None:
    """The line's baseline, else its box's bottom edge; None without either."""
    if line.baseline is not None:
        pts = _clip_points(line.baseline, width, height)
        if len(pts) >= 2:
            return pts
    if line.box is None:
        return None
    x0, _, x1, y1 = line.box
    return _clip_points([(x0, y1), (x1, y1)], width, height)


def _bounds(points: Sequence[tuple[int, int]]) -> tuple[int, int, int, int]:
    """``(HPOS, VPOS, WIDTH, HEIGHT)`` of integer points."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)


_NCNAME_BAD = re.compile(r"[^A-Za-z0-9_.\-]")


def _xml_id(value: str | None, fallback: str) -> str:
    """A valid, readable ``xsd:ID`` (an NCName) from ``value``: other characters become ``_``,
    and a leading digit, dot or hyphen gets a ``_`` before it."""
    s = _NCNAME_BAD.sub("_", value) if value else fallback
    if not s or not (s[0].isalpha() or s[0] == "_"):
        s = "_" + s
    return s


class _Ids:
    """Unique ``xsd:ID`` values for one document."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, value: str | None, fallback: str) -> str:
        base = _xml_id(value, fallback)
        s, k = base, 1
        while s in self.seen:
            k += 1
            s = f"{base}_{k}"
        self.seen.add(s)
        return s


def _text_equiv(text: str, conf: float, pad: str) -> str:
    c = min(max(float(conf), 0.0), 1.0)
    return (f'{pad}<TextEquiv conf="{c:.4f}">\n{pad}  <Unicode>{escape(text)}</Unicode>\n'
            f"{pad}</TextEquiv>\n")


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _page_points(points: Sequence[tuple[int, int]]) -> str:
    return " ".join(f"{x},{y}" for x, y in points)


# -- PAGE-XML -----------------------------------------------------------------------------------
def to_page_xml(page: PageResult, image_filename: str | None = None, creator: str = "htr-tf") -> str:
    """The page as a PAGE-XML 2019 document (``image_filename`` goes into ``Page/@imageFilename``)."""
    from htr_tf import __version__

    now = _now()
    w, h = page.width, page.height
    name = image_filename if image_filename is not None else (page.id or "page.png")
    ids = _Ids()
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n',
           f'<PcGts xmlns="{PAGE_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
           f'xsi:schemaLocation="{_SCHEMA}">\n',
           f"  <Metadata>\n    <Creator>{escape(creator)} {escape(__version__)}</Creator>\n"
           f"    <Created>{now}</Created>\n    <LastChange>{now}</LastChange>\n  </Metadata>\n",
           f'  <Page imageFilename={quoteattr(os.path.basename(str(name)))} imageWidth="{w}" imageHeight="{h}">\n']
    rids = [ids(r.id, f"r{i + 1}") for i, r in enumerate(page.regions)]
    if page.regions:
        out.append('    <ReadingOrder>\n      <OrderedGroup id="ro1" caption="Regions reading order">\n')
        for i, rid in enumerate(rids):
            out.append(f'        <RegionRefIndexed index="{i}" regionRef={quoteattr(rid)}/>\n')
        out.append("      </OrderedGroup>\n    </ReadingOrder>\n")
    for i, (region, rid) in enumerate(zip(page.regions, rids)):
        production = ' production="printed"' if region.type == "printed" else ""
        out.append(f'    <TextRegion id={quoteattr(rid)} type="paragraph"{production} '
                   f'custom="readingOrder {{index:{i};}} structure {{type:{region.type};}}">\n'
                   f'      <Coords points="{_page_points(_outline(region.polygon, region.box, w, h))}"/>\n')
        for j, line in enumerate(region.lines):
            lid = ids(line.id, f"{rid}l{j + 1}")
            out.append(f'      <TextLine id={quoteattr(lid)} custom="readingOrder {{index:{j};}}">\n'
                       f'        <Coords points="{_page_points(_outline(line.polygon, line.box, w, h))}"/>\n')
            base = _baseline(line, w, h)
            if base is not None:
                out.append(f'        <Baseline points="{_page_points(base)}"/>\n')
            for k, word in enumerate(line.words):
                if word.box is None:
                    continue
                out.append(f'        <Word id={quoteattr(ids(None, f"{lid}w{k + 1}"))}>\n'
                           f'          <Coords points="{_page_points(_box_polygon(word.box, w, h))}"/>\n')
                out.append(_text_equiv(word.text, word.confidence, "          "))
                out.append("        </Word>\n")
            if region.recognized:
                out.append(_text_equiv(line.text, line.confidence, "        "))
            out.append("      </TextLine>\n")
        if region.recognized:
            out.append(_text_equiv(region.text, _mean_conf(region.lines), "      "))
        out.append("    </TextRegion>\n")
    out.append("  </Page>\n</PcGts>\n")
    return "".join(out)


def _mean_conf(lines: Sequence[Any]) -> float:
    return float(np.mean([ln.confidence for ln in lines])) if lines else 0.0


# -- ALTO v4 ------------------------------------------------------------------------------------
def _alto_points(points: Sequence[tuple[int, int]]) -> str:
    return " ".join(f"{x} {y}" for x, y in points)


def _alto_pos(points: Sequence[tuple[int, int]]) -> str:
    x, y, bw, bh = _bounds(points)
    return f'HPOS="{x}" VPOS="{y}" WIDTH="{bw}" HEIGHT="{bh}"'


def to_alto(page: PageResult, image_filename: str | None = None, creator: str = "htr-tf") -> str:
    """The page as an ALTO v4 document (``alto-4-2.xsd``), as eScriptorium and kraken write it.

    Region types become ``OtherTag`` block types (``handwritten``, ``printed``) and every
    line has the line type ``default``; a line without recognised text (a printed region
    that was not read) gets one empty ``String``, since ALTO requires one.
    """
    from htr_tf import __version__

    w, h = page.width, page.height
    name = image_filename if image_filename is not None else (page.id or "page.png")
    ids = _Ids()
    types = sorted({r.type for r in page.regions}) or ["handwritten"]
    block_tag = {t: f"BT{i + 1}" for i, t in enumerate(types)}
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n',
           f'<alto xmlns="{ALTO_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
           f'xsi:schemaLocation="{_ALTO_SCHEMA}">\n',
           "  <Description>\n    <MeasurementUnit>pixel</MeasurementUnit>\n"
           "    <sourceImageInformation>\n"
           f"      <fileName>{escape(os.path.basename(str(name)))}</fileName>\n"
           "    </sourceImageInformation>\n"
           '    <Processing ID="htr_processing">\n'
           "      <processingCategory>contentGeneration</processingCategory>\n"
           f"      <processingDateTime>{_now()}</processingDateTime>\n"
           "      <processingSoftware>\n"
           f"        <softwareName>{escape(creator)}</softwareName>\n"
           f"        <softwareVersion>{escape(__version__)}</softwareVersion>\n"
           "      </processingSoftware>\n    </Processing>\n  </Description>\n",
           "  <Tags>\n"]
    for t in types:
        out.append(f'    <OtherTag ID="{block_tag[t]}" LABEL="{t}" DESCRIPTION="block type {t}"/>\n')
    out.append('    <OtherTag ID="LT1" LABEL="default" DESCRIPTION="line type default"/>\n  </Tags>\n')
    out.append(f'  <Layout>\n    <Page WIDTH="{w}" HEIGHT="{h}" PHYSICAL_IMG_NR="1" ID="page_1">\n'
               f'      <PrintSpace HPOS="0" VPOS="0" WIDTH="{w}" HEIGHT="{h}">\n')
    for i, region in enumerate(page.regions):
        rid = ids(region.id, f"r{i + 1}")
        outline = _outline(region.polygon, region.box, w, h)
        out.append(f'        <TextBlock ID={quoteattr(rid)} {_alto_pos(outline)} TAGREFS="{block_tag[region.type]}">\n'
                   f'          <Shape><Polygon POINTS="{_alto_points(outline)}"/></Shape>\n')
        for j, line in enumerate(region.lines):
            lid = ids(line.id, f"{rid}l{j + 1}")
            lo = _outline(line.polygon, line.box, w, h)
            base = _baseline(line, w, h)
            battr = f' BASELINE="{_alto_points(base)}"' if base is not None else ""
            out.append(f'          <TextLine ID={quoteattr(lid)} {_alto_pos(lo)}{battr} TAGREFS="LT1">\n'
                       f'            <Shape><Polygon POINTS="{_alto_points(lo)}"/></Shape>\n')
            words = [wd for wd in line.words if wd.box is not None] if region.recognized else []
            if words and len(words) == len(line.words):
                for k, word in enumerate(words):
                    if k:
                        out.append("            <SP/>\n")
                    wpos = _alto_pos(_box_polygon(word.box, w, h))
                    wc = min(max(float(word.confidence), 0.0), 1.0)
                    out.append(f'            <String ID={quoteattr(ids(None, f"{lid}_w{k + 1}"))} '
                               f'CONTENT={quoteattr(word.text)} {wpos} WC="{wc:.4f}"/>\n')
            else:
                text = line.text if region.recognized else ""
                wc = min(max(float(line.confidence), 0.0), 1.0)
                conf = f' WC="{wc:.4f}"' if region.recognized else ""
                out.append(f'            <String ID={quoteattr(ids(None, f"{lid}_w1"))} '
                           f'CONTENT={quoteattr(text)} {_alto_pos(lo)}{conf}/>\n')
            out.append("          </TextLine>\n")
        out.append("        </TextBlock>\n")
    out.append("      </PrintSpace>\n    </Page>\n  </Layout>\n</alto>\n")
    return "".join(out)


# -- the registry -------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputFormat:
    """One output format: its file suffix, its writer ``(page, image_filename) -> str`` (the
    text ends with a newline unless empty) and whether it is one XML document per page (so
    several pages need one file each)."""

    name: str
    suffix: str
    write: Callable[[PageResult, "str | None"], str]
    document: bool
    help: str


def _with_newline(s: str) -> str:
    return s + "\n" if s else s


#: Every output format by name, in the order ``--format`` lists them.
FORMAT_REGISTRY: dict[str, OutputFormat] = {f.name: f for f in (
    OutputFormat("text", ".txt", lambda p, _n: _with_newline(to_text(p)), False, "the recognised text"),
    OutputFormat("json", ".json", lambda p, _n: _with_newline(to_json(p)), False,
                 "one JSON object per page: regions, lines with boxes, polygons, baselines, confidences"),
    OutputFormat("page-xml", ".xml", lambda p, n: to_page_xml(p, n), True, "PAGE XML 2019"),
    OutputFormat("alto", ".xml", lambda p, n: to_alto(p, n), True, "ALTO v4 XML"),
)}
#: Output format names, and the file suffix each is written with.
FORMATS = tuple(FORMAT_REGISTRY)
SUFFIXES = {name: f.suffix for name, f in FORMAT_REGISTRY.items()}


def render(page: PageResult, fmt: str, image_filename: str | None = None) -> str:
    """The page in ``fmt`` (one of :data:`FORMATS`), ending with a newline."""
    f = FORMAT_REGISTRY.get(fmt)
    if f is None:
        from htr_tf.errors import ConfigError

        raise ConfigError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return f.write(page, image_filename)


# -- overlay pictures -------------------------------------------------------------------------------
_AREA = (200, 120, 0)      # BGR: blue-ish for handwritten regions
_PRINTED = (120, 120, 120)  # grey for printed regions
_LINE = (0, 140, 255)      # orange line outlines
_BASE = (60, 170, 0)       # green baselines
_TEXT = (20, 20, 200)      # red recognised text


def draw_overlay(gray: np.ndarray, page: PageResult, max_side: int = 2400) -> np.ndarray:
    """A BGR picture of the page with regions, line polygons (boxes where a line has none),
    baselines and the recognised text drawn on it.

    Large pages are scaled down to ``max_side`` pixels; the text of each line is written
    just above it, on a light band so it reads on any background.
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

    def poly(points: Points | None, box: Box | None) -> np.ndarray | None:
        if points is None:
            if box is None:
                return None
            x0, y0, x1, y1 = box
            points = ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
        return np.array([pt(x, y) for x, y in points], np.int32).reshape(-1, 1, 2)

    for region in page.regions:
        rp = poly(region.polygon, region.box)
        if rp is not None:
            cv2.polylines(img, [rp], True, _PRINTED if region.type == "printed" else _AREA, thick + 1)
        for line in region.lines:
            lp = poly(line.polygon, line.box)
            if lp is None:
                continue
            cv2.polylines(img, [lp], True, _LINE, thick)
            if line.baseline is not None:
                bp = np.array([pt(x, y) for x, y in line.baseline], np.int32).reshape(-1, 1, 2)
                cv2.polylines(img, [bp], False, _BASE, thick)
            text = line.text.encode("ascii", "replace").decode("ascii")
            if not text:
                continue
            ox, oy = int(lp[:, 0, 0].min()), int(lp[:, 0, 1].min())
            line_h = max(8.0, float(lp[:, 0, 1].max() - oy))
            scale = max(0.3, min(2.0, 0.35 * line_h / 22.0))
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
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
