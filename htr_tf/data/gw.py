"""George Washington pages -> page (form) and line record sets.

The GW set (``images/PAGE.jpg``, ``locations/PAGE.svg`` with one word polygon each,
``transcription.txt`` with ``PAGE-LL-WW l-e-t-t-e-r-s``) has word-level ground truth only.
A text line is every word sharing ``PAGE-LL``, in ``WW`` order, joined by single spaces;
its box is the union of its word polygons' boxes, padded by ``pad`` pixels.

Line crops are masked.  The word polygons of neighbouring lines interlock, so a plain box
crop of a line also holds ascenders and descenders of the lines above and below.  Measured
on the 10 pages (325 lines, Otsu ink, ``pad=8``): the boxes hold 1.08 M ink pixels of other
lines' polygons against 3.69 M of the line's own (29 %), while the line's own polygons cut
only 0.15 % of its ink (strokes crossing the polygon edge).  So the crop keeps the union of
its word polygons dilated by ``mask_dilate`` pixels, plus every ink component lying mostly
inside them (so its own strokes are never cut), and paints the rest with the crop's paper
tone (a flat paper value, not white, so no visible frame appears).
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from htr_tf.charset import DEFAULT_CHARSET, Charset
from htr_tf.crop import MASK_DILATE, POLYGON_PAD
from htr_tf.errors import DataError

__all__ = ["GW_SPECIAL_TOKENS", "gw_token_text", "gw_word_text", "read_transcription",
           "read_word_polygons", "GWLine", "group_lines", "mask_line_crop", "prepare_gw", "GW_CROPS"]

#: How ``prepare_gw`` cuts line images: by the word polygons, as the pipeline's box crop, or as
#: the pipeline's polygon crop of the line's derived shape.
GW_CROPS = ("masked", "pipeline", "derived")

#: Special tokens of ``transcription.txt`` and the text they stand for.  ``s_0`` ... ``s_9``
#: and ordinals (``s_1st``, ``s_26th`` ...) are handled by :func:`gw_token_text`.  The pound
#: sign becomes ``L`` (the charset folds ``£`` to ``L`` too); ``s_GW`` is Washington's
#: signature, written "G.W." on the pages.
GW_SPECIAL_TOKENS: dict[str, str] = {
    "s_cm": ",", "s_pt": ".", "s_mi": "-", "s_sq": ";", "s_qo": ":", "s_qt": "'",
    "s_s": "s", "s_et": "&", "s_bl": "(", "s_br": ")", "s_lb": "L", "s_GW": "G.W.", "s_": "",
}

_ORDINAL = re.compile(r"^s_(\d+)([a-z]*)$")
_WORD_ID = re.compile(r"^(?P<page>[^-\s]+)-(?P<line>\d+)-(?P<word>\d+)$")
_PATH_TOKEN = re.compile(r"[MmLlZz]|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_SVG_NS = "{http://www.w3.org/2000/svg}"

#: Pixels added around the union of a line's word boxes (as around any line polygon).
LINE_PAD = POLYGON_PAD


class UnknownTokenError(DataError):
    """A ``s_...`` token of the transcription that this module does not know."""


def gw_token_text(token: str) -> str:
    """One transcription token to text: a letter, a special token, a digit or an ordinal.

    >>> [gw_token_text(t) for t in ("a", "s_cm", "s_7", "s_1st", "s_lb", "s_")]
    ['a', ',', '7', '1st', 'L', '']
    """
    if not token.startswith("s_"):
        return token
    if token in GW_SPECIAL_TOKENS:
        return GW_SPECIAL_TOKENS[token]
    m = _ORDINAL.match(token)
    if m:
        return m.group(1) + m.group(2)
    raise UnknownTokenError(f"unknown special token {token!r}")


def gw_word_text(letters: str) -> str:
    """A transcription word (``L-e-t-t-e-r-s-s_cm``) to its text (``Letters,``)."""
    return "".join(gw_token_text(t) for t in letters.split("-") if t)


def read_transcription(path: str | os.PathLike) -> dict[str, str]:
    """``transcription.txt`` as ``{word_id: letters}`` (raw tokens, file order kept)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: transcription file not found")
    out: dict[str, str] = {}
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not _WORD_ID.match(parts[0]):
            raise DataError(f"{path}:{n}: expected 'PAGE-LL-WW l-e-t-t-e-r-s', got {raw!r}")
        if parts[0] in out:
            raise DataError(f"{path}:{n}: word {parts[0]} appears twice")
        out[parts[0]] = parts[1]
    if not out:
        raise DataError(f"{path}: no words in the transcription")
    return out


def _parse_path_d(d: str, where: str) -> np.ndarray:
    """An SVG path made of M/L/Z commands (absolute or relative) to a ``[K, 2]`` polygon."""
    tokens = _PATH_TOKEN.findall(d)
    if "".join(tokens).replace(" ", "") == "" or re.sub(r"[\s,]", "", d) != "".join(tokens):
        raise DataError(f"{where}: unsupported or malformed path data {d[:60]!r} (only M, L, Z)")
    points: list[tuple[float, float]] = []
    cmd, nums = None, []
    cur = (0.0, 0.0)
    if tokens[0] not in "MmLlZz":
        raise DataError(f"{where}: path data does not start with a command")
    for tok in tokens + ["Z"]:
        if tok in "MmLlZz":
            if len(nums) % 2:
                raise DataError(f"{where}: odd number of coordinates in path data")
            for i in range(0, len(nums), 2):
                x, y = nums[i], nums[i + 1]
                if cmd in ("m", "l"):
                    x, y = cur[0] + x, cur[1] + y
                cur = (x, y)
                points.append(cur)
            cmd, nums = tok, []
        else:
            nums.append(float(tok))
    if len(points) < 3:
        raise DataError(f"{where}: polygon has {len(points)} points (need at least 3)")
    return np.asarray(points, np.float32)


def read_word_polygons(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``locations/PAGE.svg`` as ``{word_id: polygon [K, 2] float32}`` in page pixels."""
    from defusedxml import ElementTree as ET

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: word locations file not found")
    try:
        root = ET.parse(str(path)).getroot()
    except Exception as e:  # defusedxml raises ParseError or its own DefusedXmlException
        raise DataError(f"{path}: malformed SVG: {e}") from None
    out: dict[str, np.ndarray] = {}
    for el in root.iter():
        if el.tag not in (f"{_SVG_NS}path", "path"):
            continue
        wid, d = el.get("id"), el.get("d")
        if not wid or not d:
            raise DataError(f"{path}: a <path> without id or d attribute")
        if wid in out:
            raise DataError(f"{path}: word {wid} has two polygons")
        out[wid] = _parse_path_d(d, f"{path}: {wid}")
    return out


@dataclass
class GWLine:
    """One text line of a page: its words in order, their polygons and texts."""

    id: str
    page: str
    word_ids: list[str] = field(default_factory=list)
    word_texts: list[str] = field(default_factory=list)
    polygons: list[np.ndarray] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(t for t in self.word_texts if t)

    def box(self, pad: int, width: int, height: int) -> np.ndarray:
        """xyxy union of the word boxes plus ``pad``, clipped to the page (integers)."""
        from htr_tf.crop import polygon_box

        return polygon_box(self.polygons, pad, width, height)


def group_lines(words: dict[str, str], polygons: dict[str, np.ndarray], page: str,
                where: str = "") -> tuple[list[GWLine], Counter]:
    """Words of one page -> lines in ``LL`` order, with words in ``WW`` order.

    Returns the lines and a counter of skipped words by reason.  A word of the
    transcription without a polygon is an error: the crop would silently lose it.
    """
    skipped: Counter = Counter()
    by_line: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for wid in words:
        m = _WORD_ID.match(wid)
        if m is None or m.group("page") != page:
            continue
        if wid not in polygons:
            raise DataError(f"{where or page}: word {wid} is in the transcription but has no polygon")
        by_line[int(m.group("line"))].append((int(m.group("word")), wid))
    lines = []
    for ll in sorted(by_line):
        entries = sorted(by_line[ll])
        line = GWLine(id=f"{page}-{ll:02d}", page=page)
        for _, wid in entries:
            try:
                text = gw_word_text(words[wid])
            except UnknownTokenError as e:
                raise DataError(f"{where or page}: word {wid}: {e}") from None
            if not text:
                skipped["word: empty transcription"] += 1
                continue
            line.word_ids.append(wid)
            line.word_texts.append(text)
            line.polygons.append(polygons[wid])
        if line.word_ids:
            lines.append(line)
    return lines, skipped


def mask_line_crop(page: np.ndarray, line: GWLine, box: np.ndarray, ink_threshold: float,
                   dilate: int = MASK_DILATE) -> np.ndarray:
    """Cut ``box`` from ``page`` keeping only the line's own ink (see the module docstring)."""
    from htr_tf.crop import mask_polygons

    return mask_polygons(page, line.polygons, box, ink_threshold, dilate)


def _find_image(images: Path, page: str) -> Path:
    for ext in (".jpg", ".jpeg", ".png", ".tif", ".tiff"):
        p = images / f"{page}{ext}"
        if p.is_file():
            return p
    raise DataError(f"{images}: no image for page {page} ({page}.jpg/.png/.tif)")


def _split_of_pages(splits: dict[str, Sequence]) -> dict[str, str]:
    out: dict[str, str] = {}
    for split, pages in splits.items():
        for p in pages:
            p = str(p).strip()
            if p in out:
                raise DataError(f"page {p} is in both the {out[p]} and the {split} split")
            out[p] = split
    return out


def prepare_gw(gw_dir: str | os.PathLike, out: str | os.PathLike, train_pages: Iterable,
               val_pages: Iterable, test_pages: Iterable = (), progress: bool = True, *,
               pad: int = LINE_PAD, mask: bool = True, crop: str = "masked",
               charset: Charset = DEFAULT_CHARSET, per_shard: int = 2000) -> dict:
    """Convert a GW directory into a record set with ``train``/``validation``/``test`` splits.

    Each page listed in a split gives one form record (the page, its line and word boxes)
    and one line record per text line.  Words and lines that are not written are counted
    in the manifest's ``skipped`` by reason.  Returns the manifest.

    ``crop`` says how line images are cut: ``masked`` keeps only the line's own word polygons
    (``mask=False`` turns that into a plain box crop); ``pipeline`` cuts them as the page
    pipeline does from a line box (:func:`htr_tf.crop.cut_line`, ``--line-crop box``); ``derived``
    cuts them as the pipeline's default ``--line-crop polygon`` does: the polygon that
    :func:`htr_tf.line_shapes.line_shapes` derives from the page's line boxes and ink, masked by
    :func:`htr_tf.crop.cut_polygon`.  Both let a recogniser be trained and validated on what it
    sees on real pages.
    """
    if crop not in GW_CROPS:
        raise DataError(f"unknown crop style {crop!r}; valid: {', '.join(GW_CROPS)}")
    import cv2
    from tqdm import tqdm

    from htr_tf.data.records import FormExample, LineExample, RecordSet, RecordSetWriter
    from htr_tf.fileio import encode_png, read_image
    from htr_tf.geometry import union_box

    gw_dir = Path(gw_dir)
    if not gw_dir.is_dir():
        raise DataError(f"{gw_dir}: GW directory not found")
    images, locations = gw_dir / "images", gw_dir / "locations"
    for d in (images, locations):
        if not d.is_dir():
            raise DataError(f"{d}: missing (expected images/, locations/ and transcription.txt)")
    words = read_transcription(gw_dir / "transcription.txt")
    page_split = _split_of_pages({"train": list(train_pages), "validation": list(val_pages),
                                  "test": list(test_pages)})
    if not page_split:
        raise DataError("no pages given for any split")
    pages_in_text = list(dict.fromkeys(_WORD_ID.match(w).group("page") for w in words))  # type: ignore[union-attr]
    missing = [p for p in page_split if p not in pages_in_text]
    if missing:
        raise DataError(f"{gw_dir / 'transcription.txt'}: no words for page(s) {missing}")

    mask = mask and crop == "masked"
    if crop in ("pipeline", "derived"):
        from htr_tf.crop import cut_line, cut_polygon
        from htr_tf.line_shapes import line_shapes
    info = {"pad": pad, "mask": mask, "mask_dilate": MASK_DILATE if mask else 0, "crop": crop,
            "pages": {s: [p for p in page_split if page_split[p] == s] for s in ("train", "validation", "test")},
            "words": {}}
    with RecordSetWriter(out, source="gw", charset=charset, per_shard=per_shard, info=info) as w:
        for page in pages_in_text:
            if page not in page_split:
                n_words = sum(1 for wid in words if wid.startswith(page + "-"))
                n_lines = len({wid.rsplit("-", 1)[0] for wid in words if wid.startswith(page + "-")})
                w.skip("word: page not in any split", page, n_words)
                w.skip("line: page not in any split", page, n_lines)
        for page in tqdm([p for p in pages_in_text if p in page_split], desc="GW pages",
                         unit="page", disable=not progress):
            split = page_split[page]
            svg = locations / f"{page}.svg"
            polygons = read_word_polygons(svg)
            lines, skipped = group_lines(words, polygons, page, where=str(svg))
            for reason, n in skipped.items():
                w.skip(reason, page, n)
            page_words = {wid for wid in words if wid.startswith(page + "-")}
            extra = sorted(set(polygons) - page_words)
            if extra:
                w.skip("polygon without transcription", extra[0], len(extra))
            img_path = _find_image(images, page)
            gray = read_image(img_path)
            H, W = gray.shape
            thr, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
            line_boxes, line_ids, line_texts = [], [], []
            word_boxes, word_texts, word_line = [], [], []
            kept = []
            for line in lines:
                text = charset.normalize(line.text)
                unknown = charset.unknown(text)
                if unknown:
                    w.unknown_chars.update(unknown)
                    w.skip("line: characters outside the charset", line.id)
                    w.skip("word: its line has characters outside the charset", line.id, len(line.word_ids))
                    continue
                box = line.box(pad, W, H)
                if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                    w.skip("line: box outside the page", line.id)
                    w.skip("word: its line's box is outside the page", line.id, len(line.word_ids))
                    continue
                kept.append((line, text, box))
            shapes = (line_shapes(gray, np.asarray([b for _, _, b in kept], np.float32).reshape(-1, 4))
                      if crop == "derived" else None)
            for k, (line, text, box) in enumerate(kept):
                if crop == "pipeline" or (crop == "derived" and not shapes[k].from_ink):
                    image, _ = cut_line(gray, box)
                elif crop == "derived":
                    image, _ = cut_polygon(gray, shapes[k].polygon, threshold=thr)
                elif mask:
                    image = mask_line_crop(gray, line, box, thr)
                else:
                    x0, y0, x1, y1 = (int(v) for v in box)
                    image = np.ascontiguousarray(gray[y0:y1, x0:x1])
                w.add_line(split, LineExample(
                    id=line.id, image_png=encode_png(image), height=image.shape[0], width=image.shape[1],
                    text=text, ids=charset.encode(text), form_id=page, writer="gw", source="gw"))
                li = len(line_ids)
                line_boxes.append(box)
                line_ids.append(line.id)
                line_texts.append(text)
                for wt, poly in zip(line.word_texts, line.polygons):
                    x0, y0 = poly.min(0)
                    x1, y1 = poly.max(0)
                    word_boxes.append([max(0, x0), max(0, y0), min(W, x1), min(H, y1)])
                    word_texts.append(wt)
                    word_line.append(li)
                w.info["words"][split] = w.info["words"].get(split, 0) + len(line.word_ids)
            if not line_ids:
                w.skip("form: page without lines", page)
                continue
            w.add_form(split, FormExample(
                id=page, image_png=encode_png(gray), height=H, width=W,
                paragraph_box=union_box(np.asarray(line_boxes)), line_boxes=np.asarray(line_boxes, np.float32),
                line_ids=line_ids, line_texts=line_texts,
                word_boxes=np.asarray(word_boxes, np.float32).reshape(-1, 4), word_texts=word_texts,
                word_line=word_line, writer="gw", source="gw"))
    return RecordSet(out).manifest
