"""Line ground truth from PAGE XML and ALTO: one typed page, and record sets made from it.

The formats people already have: PAGE XML (2013 and 2019 schemas) and ALTO (v2 to v4), as
exported by Transkribus, eScriptorium and kraken.  :func:`read_xml_page` turns either into
the same :class:`GTPage` (regions in reading order, lines with polygon, baseline, text and
type), and :func:`prepare_xml` compiles pages into a record set: one line record per text
line, cut by :mod:`htr_tf.crop` exactly as the page pipeline cuts lines, and one form record
per page (line boxes, polygons and baselines, for layout training).

Transcription markup (crossed-out, unreadable, insertion and superscript marks) differs
between data sets; it is handled by a :class:`Markup` preset per source, never learned.
Splits are by document (a writer's or a text's pages stay together), from split files or a
stable hash, never by line.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from htr_tf.charset import DEFAULT_CHARSET, Charset
from htr_tf.errors import DataError

__all__ = ["GTLine", "GTRegion", "GTPage", "Markup", "MARKUP_PRESETS", "read_xml_page", "find_xml_files",
           "find_page_image", "split_of_document", "prepare_xml", "CROPS"]

CROPS = ("masked", "box", "pipeline", "derived")
_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".jp2", ".webp")
_NUM = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


# -- the typed page -------------------------------------------------------------------------
@dataclass
class GTLine:
    """One text line: id, text as written in the file, polygon and baseline (``[K, 2]`` page px)."""

    id: str
    text: str
    polygon: np.ndarray | None = None
    baseline: np.ndarray | None = None
    box: np.ndarray | None = None
    type: str = ""
    region: str = ""

    def outline(self) -> np.ndarray:
        """The polygon, else the box as a 4-point polygon."""
        if self.polygon is not None and len(self.polygon) >= 3:
            return self.polygon
        if self.box is None:
            raise DataError(f"line {self.id}: neither a polygon nor a box")
        x0, y0, x1, y1 = self.box
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


@dataclass
class GTRegion:
    id: str
    type: str = ""
    polygon: np.ndarray | None = None
    lines: list[GTLine] = field(default_factory=list)


@dataclass
class GTPage:
    """A page of ground truth, in reading order."""

    xml: str
    format: str                      # "alto" or "page"
    image_name: str
    width: int
    height: int
    regions: list[GTRegion] = field(default_factory=list)

    @property
    def lines(self) -> list[GTLine]:
        return [ln for r in self.regions for ln in r.lines]

    def scaled(self, sx: float, sy: float) -> "GTPage":
        """The page with every coordinate multiplied by (sx, sy) (an image of another size)."""
        def s(a):
            return None if a is None else (np.asarray(a, np.float32) * np.array([sx, sy], np.float32))

        def sb(b):
            return None if b is None else np.asarray(b, np.float32) * np.array([sx, sy, sx, sy], np.float32)

        regions = [GTRegion(r.id, r.type, s(r.polygon),
                            [GTLine(ln.id, ln.text, s(ln.polygon), s(ln.baseline), sb(ln.box), ln.type, ln.region)
                             for ln in r.lines]) for r in self.regions]
        return GTPage(self.xml, self.format, self.image_name, round(self.width * sx), round(self.height * sy), regions)


# -- parsing --------------------------------------------------------------------------------
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _children(el, name: str):
    return [c for c in el if _local(c.tag) == name]


def _child(el, name: str):
    for c in el:
        if _local(c.tag) == name:
            return c
    return None


def _points(text: str | None, where: str) -> np.ndarray | None:
    """``"x1 y1 x2 y2"`` or ``"x1,y1 x2,y2"`` -> ``[K, 2]`` float32 (None when empty)."""
    if text is None or not text.strip():
        return None
    nums = _NUM.findall(text)
    if len(nums) % 2:
        raise DataError(f"{where}: odd number of coordinates in {text[:60]!r}")
    return np.asarray([float(v) for v in nums], np.float32).reshape(-1, 2)


def _float(el, attr: str, where: str) -> float | None:
    v = el.get(attr)
    if v is None or v == "":
        return None
    try:
        return float(v)
    except ValueError:
        raise DataError(f"{where}: attribute {attr}={v!r} is not a number") from None


def _parse(path: Path):
    from defusedxml import ElementTree as ET

    try:
        return ET.parse(str(path)).getroot()
    except Exception as e:  # ParseError, or defusedxml's refusal of entities / DTDs
        raise DataError(f"{path}: malformed or unsafe XML: {e}") from None


def _read_alto(root, path: Path) -> GTPage:
    where = str(path)
    desc = _child(root, "Description")
    unit = ""
    image_name = ""
    if desc is not None:
        mu = _child(desc, "MeasurementUnit")
        unit = (mu.text or "").strip() if mu is not None else ""
        sii = _child(desc, "sourceImageInformation")
        if sii is not None:
            fn = _child(sii, "fileName")
            image_name = (fn.text or "").strip() if fn is not None else ""
    if unit and unit != "pixel":
        raise DataError(f"{where}: ALTO MeasurementUnit {unit!r} is not supported (only 'pixel')")
    tags: dict[str, str] = {}
    for t in root.iter():
        if _local(t.tag) in ("OtherTag", "LayoutTag", "StructureTag") and t.get("ID"):
            tags[t.get("ID")] = t.get("LABEL") or t.get("VALUE") or ""

    def label(el) -> str:
        return " ".join(tags.get(r, r) for r in (el.get("TAGREFS") or "").split())

    page_el = next((e for e in root.iter() if _local(e.tag) == "Page"), None)
    if page_el is None:
        raise DataError(f"{where}: ALTO file without a Page element")
    width = _float(page_el, "WIDTH", where)
    height = _float(page_el, "HEIGHT", where)
    page = GTPage(where, "alto", image_name, int(width or 0), int(height or 0))
    for bi, block in enumerate(e for e in page_el.iter() if _local(e.tag) == "TextBlock"):
        bid = block.get("ID") or f"block{bi}"
        shape = _child(block, "Shape")
        bpoly = None
        if shape is not None and _child(shape, "Polygon") is not None:
            bpoly = _points(_child(shape, "Polygon").get("POINTS"), f"{where}: block {bid}")
        region = GTRegion(bid, label(block), bpoly)
        for li, tl in enumerate(_children(block, "TextLine")):
            lid = tl.get("ID") or f"{bid}_l{li}"
            lw = f"{where}: line {lid}"
            parts: list[str] = []
            for c in tl:
                n = _local(c.tag)
                if n == "String":
                    parts.append(c.get("CONTENT") or "")
                elif n == "SP":
                    parts.append(" ")
                elif n == "HYP":
                    parts.append(c.get("CONTENT") or "-")
            if any(_local(c.tag) == "SP" for c in tl):
                text = "".join(parts)
            else:
                text = " ".join(p for p in parts if p)
            poly = None
            shape = _child(tl, "Shape")
            if shape is not None and _child(shape, "Polygon") is not None:
                poly = _points(_child(shape, "Polygon").get("POINTS"), lw)
            x, y = _float(tl, "HPOS", lw), _float(tl, "VPOS", lw)
            w, h = _float(tl, "WIDTH", lw), _float(tl, "HEIGHT", lw)
            box = None if None in (x, y, w, h) else np.array([x, y, x + w, y + h], np.float32)
            base = None
            b = tl.get("BASELINE")
            if b:
                pts = _points(b, lw) if len(_NUM.findall(b)) > 1 else None
                if pts is None and box is not None:  # ALTO v2/v3: one y value
                    yb = float(_NUM.findall(b)[0])
                    pts = np.array([[box[0], yb], [box[2], yb]], np.float32)
                base = pts
            region.lines.append(GTLine(lid, text, poly, base, box, label(tl), bid))
        page.regions.append(region)
    return page


def _page_points(el, where: str) -> np.ndarray | None:
    """PAGE ``Coords``/``Baseline``: ``points="x,y x,y"`` (2013+) or ``<Point x y/>`` (2010)."""
    if el is None:
        return None
    if el.get("points") is not None:
        return _points(el.get("points"), where)
    pts = [(float(p.get("x")), float(p.get("y"))) for p in _children(el, "Point")]
    return np.asarray(pts, np.float32) if pts else None


def _text_equiv(el) -> str | None:
    """The text of an element's own TextEquiv (lowest ``index`` first), None when absent."""
    eqs = _children(el, "TextEquiv")
    if not eqs:
        return None
    eqs.sort(key=lambda e: int(e.get("index", "0") or 0))
    u = _child(eqs[0], "Unicode")
    return (u.text or "") if u is not None else ""


def _read_page_xml(root, path: Path) -> GTPage:
    where = str(path)
    page_el = _child(root, "Page")
    if page_el is None:
        raise DataError(f"{where}: PAGE file without a Page element")
    width = _float(page_el, "imageWidth", where) or 0
    height = _float(page_el, "imageHeight", where) or 0
    page = GTPage(where, "page", page_el.get("imageFilename") or "", int(width), int(height))
    regions: dict[str, GTRegion] = {}
    for ri, reg in enumerate(e for e in page_el.iter() if _local(e.tag) == "TextRegion"):
        rid = reg.get("id") or f"region{ri}"
        rtype = reg.get("type") or ""
        m = re.search(r"structure\s*\{[^}]*type:\s*([^;}]+)", reg.get("custom") or "")
        if m:
            rtype = m.group(1).strip()
        region = GTRegion(rid, rtype, _page_points(_child(reg, "Coords"), f"{where}: region {rid}"))
        for li, tl in enumerate(_children(reg, "TextLine")):
            lid = tl.get("id") or f"{rid}_l{li}"
            lw = f"{where}: line {lid}"
            text = _text_equiv(tl)
            if text is None:  # no line-level text: the words', in order
                words = [_text_equiv(w) or "" for w in _children(tl, "Word")]
                text = " ".join(w for w in words if w)
            poly = _page_points(_child(tl, "Coords"), lw)
            base = _page_points(_child(tl, "Baseline"), lw)
            box = None
            if poly is not None and len(poly):
                box = np.array([*poly.min(0), *poly.max(0)], np.float32)
            ltype = ""
            m = re.search(r"structure\s*\{[^}]*type:\s*([^;}]+)", tl.get("custom") or "")
            if m:
                ltype = m.group(1).strip()
            region.lines.append(GTLine(lid, text, poly, base, box, ltype, rid))
        regions[rid] = region
    order: list[str] = []
    ro = _child(page_el, "ReadingOrder")
    if ro is not None:
        refs = [(int(e.get("index", "0") or 0), i, e.get("regionRef")) for i, e in enumerate(ro.iter())
                if _local(e.tag) in ("RegionRefIndexed", "RegionRef") and e.get("regionRef")]
        order = [r for _, _, r in sorted(refs)]
    seen = set()
    for rid in order + list(regions):
        if rid in regions and rid not in seen:
            seen.add(rid)
            page.regions.append(regions[rid])
    return page


def read_xml_page(path: str | os.PathLike) -> GTPage:
    """A PAGE XML or ALTO file -> :class:`GTPage` (format told by the root element)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: XML file not found")
    root = _parse(path)
    kind = _local(root.tag)
    if kind == "alto":
        return _read_alto(root, path)
    if kind == "PcGts":
        return _read_page_xml(root, path)
    raise DataError(f"{path}: neither ALTO (<alto>) nor PAGE XML (<PcGts>); root element is <{kind}>")


def find_xml_files(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files, directories (their ``*.xml``, recursively) and globs -> sorted XML paths."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(q for q in p.rglob("*.xml") if q.is_file())
        elif p.is_file():
            out.append(p)
        else:
            hits = sorted(Path(h) for h in glob.glob(str(item), recursive=True) if Path(h).is_file())
            if not hits:
                raise DataError(f"{item}: no such file or directory, and no file matches it")
            out += hits
    seen, uniq = set(), []
    for p in out:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            uniq.append(p)
    if not uniq:
        raise DataError(f"no XML files in {[str(i) for i in inputs]}")
    return uniq


def find_page_image(xml: Path, image_name: str, images: str | os.PathLike | None = None) -> Path:
    """The page image an XML file describes: the file it names, else one with the XML's stem.

    Looked for in ``images`` (when given), beside the XML, and in ``../images`` of the XML.
    """
    dirs = ([Path(images)] if images else []) + [xml.parent, xml.parent.parent / "images"]
    names = []
    if image_name:
        names.append(image_name.replace("\\", "/").split("/")[-1])
        if not (image_name.startswith(("http://", "https://"))):
            cand = (xml.parent / image_name)
            if cand.is_file():
                return cand
    for d in dirs:
        for n in names:
            if (d / n).is_file():
                return d / n
        for ext in _IMAGE_EXTS:
            for e in (ext, ext.upper()):
                if (d / f"{xml.stem}{e}").is_file():
                    return d / f"{xml.stem}{e}"
    raise DataError(f"{xml}: page image {image_name or xml.stem + '.*'} not found in "
                    f"{', '.join(str(d) for d in dirs)}")


# -- transcription markup -------------------------------------------------------------------
@dataclass(frozen=True)
class Markup:
    """How one source marks what is not plain text.

    ``skip``: ``(regex, reason)`` pairs; a line whose text matches is not used (the ink
    there is crossed out or unreadable, so no text describes it).  ``delete``: regexes
    removed from the text (marks of insertion or superscript whose ink is the letters).
    """

    skip: tuple[tuple[str, str], ...] = ()
    delete: tuple[str, ...] = ()
    #: How a page id maps to its document (the unit of splits): a regex whose first group is it.
    document: str = ""

    def apply(self, text: str) -> tuple[str | None, str]:
        """(cleaned text, "") or (None, reason to skip)."""
        for pattern, reason in self.skip:
            if re.search(pattern, text):
                return None, reason
        for pattern in self.delete:
            text = re.sub(pattern, "", text)
        return text, ""

    def document_of(self, page_id: str) -> str:
        if self.document:
            m = re.match(self.document, page_id)
            if m and m.group(1):
                return m.group(1)
        return page_id


#: Presets for the data sets people use (see ``../shared/data/real-train/README.md`` for the
#: three conventions below).  ``none`` takes every text as it is.
MARKUP_PRESETS: dict[str, Markup] = {
    "none": Markup(),
    # Copiste d'un jour: >readable crossed-out< and >< (unreadable crossed-out); the text id
    # is the page id without _double and _N (page of the same copy).
    "copiste": Markup(skip=((r">[^<]*<", "line: crossed-out text (>...<)"),),
                      document=r"^(.+?)(?:_\d)?(?:_double)?$"),
    # Peraire: # crossed-out, U+22CE insertion sign, ^ superscript.
    "peraire": Markup(skip=((r"#", "line: crossed-out text (#)"), (r">[^<]*<", "line: crossed-out text (>...<)")),
                      delete=("\u22ce", r"\^"), document=r"^(.+)_[^_]+$"),
    # CREMMA-MSS-20: <> crossed-out, [?] uncertain, ^ superscript.
    "cremma": Markup(skip=((r"<>", "line: crossed-out text (<>)"), (r"\[\?\]", "line: uncertain reading ([?])")),
                     delete=(r"\^",), document=r"^([a-z]+)_"),
}


def split_of_document(document: str, source: str, fractions: Mapping[str, float]) -> str:
    """A stable split for a document: ``sha256(source:document)`` mapped onto ``fractions``
    (e.g. ``{"validation": 0.05, "test": 0.05}``; the rest is ``train``)."""
    h = int(hashlib.sha256(f"{source}:{document}".encode()).hexdigest()[:12], 16) / float(16 ** 12)
    acc = 0.0
    for split, frac in fractions.items():
        acc += frac
        if h < acc:
            return split
    return "train"


def _read_split_files(files: Mapping[str, str | os.PathLike]) -> dict[str, str]:
    out: dict[str, str] = {}
    for split, f in files.items():
        p = Path(f)
        if not p.is_file():
            raise DataError(f"{p}: split file for {split!r} not found")
        for n, raw in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            pid = raw.strip()
            if not pid or pid.startswith("#"):
                continue
            pid = Path(pid).stem if pid.endswith((".xml", *_IMAGE_EXTS)) else pid
            if pid in out and out[pid] != split:
                raise DataError(f"{p}:{n}: page {pid} is in both the {out[pid]} and the {split} split")
            out[pid] = split
    return out


def _clip(points: np.ndarray, width: int, height: int) -> tuple[np.ndarray, bool]:
    c = np.clip(points, [0, 0], [width - 1, height - 1]).astype(np.float32)
    return c, bool(np.any(np.abs(c - points) > 0.5))


# -- record sets ----------------------------------------------------------------------------
def prepare_xml(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                images: str | os.PathLike | None = None, source: str = "xml",
                markup: str | Markup = "none", split_files: Mapping[str, str | os.PathLike] | None = None,
                split_fractions: Mapping[str, float] | None = None, crop: str = "masked",
                writer: str = "", charset: Charset = DEFAULT_CHARSET, per_shard: int = 2000,
                attribution: Sequence[str] = (), progress: bool = True) -> dict:
    """Convert PAGE/ALTO pages and their images into a record set; returns the manifest.

    ``crop``: ``masked`` cuts each line by its polygon (:func:`htr_tf.crop.cut_polygon`),
    ``box`` is the plain box crop a user would hand in (neighbours' ink shows), ``pipeline``
    the box crop with neighbours' ink painted out as the page pipeline does (``--line-crop
    box``), ``derived`` the polygon the page pipeline derives from the line boxes and the ink
    (:func:`htr_tf.line_shapes.line_shapes`, ``--line-crop polygon``, the default), so a
    recogniser learns the crops it reads on pages.  Splits come
    from ``split_files`` (``{split: file of page ids}``; pages in none are skipped) or else
    from a stable hash of each page's document (``split_fractions``, default 5 % validation,
    5 % test).  ``writer``: the writer key of every line (default: the document).
    ``attribution``: lines the data's licence asks for (CC BY); every model trained on the
    records carries them in its ``htr.json`` (``info.attribution``).
    Everything not written is counted in the manifest's ``skipped`` by reason.
    """
    from tqdm import tqdm

    from htr_tf.crop import LINE_PAD_X, cut_line, cut_polygon, ink_threshold, polygon_box
    from htr_tf.data.records import FormExample, LineExample, RecordSet, RecordSetWriter
    from htr_tf.fileio import encode_png, read_image
    from htr_tf.line_shapes import line_shapes

    if crop not in CROPS:
        raise DataError(f"unknown crop {crop!r}; valid: {', '.join(CROPS)}")
    if isinstance(markup, str):
        if markup not in MARKUP_PRESETS:
            raise DataError(f"unknown markup preset {markup!r}; valid: {', '.join(MARKUP_PRESETS)}")
        markup = MARKUP_PRESETS[markup]
    files = find_xml_files(inputs)
    page_split = _read_split_files(split_files) if split_files else None
    fractions = dict(split_fractions) if split_fractions is not None else {"validation": 0.05, "test": 0.05}
    info: dict = {"crop": crop, "markup": {"skip": [list(s) for s in markup.skip], "delete": list(markup.delete),
                                           "document": markup.document},
                  "splits": "files" if page_split is not None else {"hash": fractions},
                  "pages": {}, "documents": {}, "scaled_pages": [], "clipped_lines": 0, "formats": Counter(),
                  "attribution": [a for a in attribution if a]}
    seen_ids: set[str] = set()
    with RecordSetWriter(out, source=source, charset=charset, per_shard=per_shard, info=info) as w:
        info = w.info  # the writer's copy is what the manifest gets
        for xml in tqdm(files, desc=f"{source} pages", unit="page", disable=not progress):
            page_id = xml.stem
            try:
                gt = read_xml_page(xml)
            except DataError as e:
                w.skip("page: unreadable XML", str(e))
                continue
            info["formats"][gt.format] += 1
            doc = markup.document_of(page_id)
            if page_split is not None:
                split = page_split.get(page_id)
                if split is None:
                    w.skip("page: not in any split file", page_id)
                    continue
            else:
                split = split_of_document(doc, source, fractions)
            if page_id in seen_ids:
                w.skip("page: same page id twice", str(xml))
                continue
            seen_ids.add(page_id)
            try:
                img_path = find_page_image(xml, gt.image_name, images)
                gray = read_image(img_path)
            except DataError as e:
                w.skip("page: image missing or unreadable", str(e) if str(xml) in str(e) else f"{xml}: {e}")
                continue
            H, W = gray.shape[:2]
            if gt.width and gt.height and (gt.width, gt.height) != (W, H):
                gt = gt.scaled(W / gt.width, H / gt.height)
                info["scaled_pages"].append(f"{page_id}: XML says {gt.width}x{gt.height}, image is {W}x{H}; "
                                            "coordinates scaled")
            thr = ink_threshold(gray)
            boxes, ids, texts, polys, bases = [], [], [], [], []
            pending: list[tuple] = []   # lines kept, cut once the page's boxes are all known
            for line in gt.lines:
                lid = f"{page_id}/{line.id}"
                raw = unicodedata.normalize("NFC", line.text or "")
                if not raw.strip():
                    w.skip("line: empty text", lid)
                    continue
                cleaned, reason = markup.apply(raw)
                if cleaned is None:
                    w.skip(reason, lid)
                    continue
                text = charset.normalize(cleaned)
                if not text:
                    w.skip("line: empty after removing markup", lid)
                    continue
                unknown = charset.unknown(text)
                if unknown:
                    w.unknown_chars.update(unknown)
                    w.skip("line: characters outside the charset", lid)
                    continue
                try:
                    outline = line.outline()
                except DataError:
                    w.skip("line: no polygon and no box", lid)
                    continue
                clipped, was = _clip(outline, W, H)
                box = polygon_box([clipped], 0, W, H)
                if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                    w.skip("line: outside the page", lid)
                    continue
                if was:
                    info["clipped_lines"] += 1
                base = line.baseline if line.baseline is not None and len(line.baseline) >= 2 else None
                pending.append((lid, text, clipped, box,
                                _clip(base, W, H)[0] if base is not None else np.zeros((0, 2), np.float32)))
            shapes = (line_shapes(gray, np.asarray([p[3] for p in pending], np.float32).reshape(-1, 4))
                      if crop == "derived" else None)
            for k, (lid, text, clipped, box, base) in enumerate(pending):
                if crop == "masked":
                    image, _ = cut_polygon(gray, clipped, threshold=thr)
                elif crop == "derived" and shapes[k].from_ink:
                    image, _ = cut_polygon(gray, shapes[k].polygon, threshold=thr)
                else:
                    image, _ = cut_line(gray, box, pad_x=LINE_PAD_X, pad_y=0, isolate=crop != "box")
                if image.shape[0] < 4 or image.shape[1] < 4:
                    w.skip("line: crop smaller than 4 px", lid)
                    continue
                w.add_line(split, LineExample(
                    id=lid, image_png=encode_png(image), height=image.shape[0], width=image.shape[1],
                    text=text, ids=charset.encode(text), form_id=page_id, writer=writer or doc, source=source))
                boxes.append(box)
                ids.append(lid)
                texts.append(text)
                polys.append(clipped)
                bases.append(base)
            info["pages"].setdefault(split, []).append(page_id)
            info["documents"].setdefault(split, set()).add(doc)
            if not ids:
                w.skip("page: no usable lines", page_id)
                continue
            regions = [np.asarray(b) for b in boxes]
            para = np.array([min(b[0] for b in regions), min(b[1] for b in regions),
                             max(b[2] for b in regions), max(b[3] for b in regions)], np.float32)
            w.add_form(split, FormExample(
                id=page_id, image_png=encode_png(gray), height=H, width=W, paragraph_box=para,
                line_boxes=np.asarray(boxes, np.float32), line_ids=ids, line_texts=texts,
                writer=writer or doc, source=source, line_polygons=polys, line_baselines=bases))
        info["documents"] = {s: len(d) for s, d in info["documents"].items()}
        info["formats"] = dict(info["formats"])
    return RecordSet(out).manifest


def parse_split_args(values: Iterable[str]) -> dict[str, str]:
    """``["train=FILE", ...]`` -> ``{"train": FILE}`` with a clear error for a malformed item."""
    out: dict[str, str] = {}
    for v in values:
        if "=" not in v:
            raise DataError(f"--split-file {v!r}: expected SPLIT=FILE (e.g. train=splits/train.txt)")
        k, f = v.split("=", 1)
        if not k or not f:
            raise DataError(f"--split-file {v!r}: expected SPLIT=FILE")
        out[k] = f
    return out
