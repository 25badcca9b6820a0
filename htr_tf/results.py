"""Typed recognition results: the contract between the recogniser and every output writer.

The tree grows page -> region -> line -> word (docTR's Document/Page/Block/Line/Word,
kraken's records): the recogniser fills lines and words, the pipeline puts them into
regions of a page (handwritten or printed text blocks, in reading order).  Text, JSON,
PAGE-XML, ALTO and overlay pictures (:mod:`htr_tf.outputs`) are all made from this tree.
Every level has ``text``, ``confidence`` (a probability in ``[0, 1]``, see
:mod:`htr_tf.decode.ctc` for its definition) and a ``box`` (``xyxy`` page pixels, or
``None`` when unknown), and a ``to_dict()`` that gives plain JSON-ready values.  Lines and
regions may also carry a ``polygon`` (their outline, ``((x, y), ...)`` page pixels) and
lines a ``baseline`` (the polyline the writing rests on, left to right), as kraken's
``BaselineLine`` does: the writers put them out where the format has a place for them.

>>> from htr_tf.decode import DecodedLine
>>> d = DecodedLine("to be", (1, 2, 3, 4, 5), 0.9, (.9, .8, 1., .95, .85),
...                 ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9)), num_frames=10)
>>> line = LineResult.from_decoded(d, box=(100, 50, 200, 80), frame_width=10.0)
>>> [(w.text, w.box) for w in line.words]
[('to', (100.0, 50.0, 130.0, 80.0)), ('be', (160.0, 50.0, 190.0, 80.0))]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from htr_tf.decode.ctc import DecodedLine

__all__ = ["Box", "Points", "WordResult", "LineResult", "RegionResult", "PageResult", "line_frame_width",
           "REGION_TYPES"]

#: ``(x0, y0, x1, y1)`` in page pixels.
Box = tuple[float, float, float, float]
#: A polygon or polyline: ``((x, y), ...)`` in page pixels.
Points = tuple[tuple[float, float], ...]

#: What a region holds: handwriting (recognised) or printed text (reported, recognised only
#: when the pipeline is asked to).
REGION_TYPES = ("handwritten", "printed")

#: Decimal places kept by ``to_dict``: confidences, then pixel coordinates.
_CONF_DIGITS = 4
_BOX_DIGITS = 1


def _box(b: Sequence[float] | None) -> Box | None:
    if b is None:
        return None
    if len(b) != 4:
        raise ValueError(f"a box is (x0, y0, x1, y1), got {b!r}")
    x0, y0, x1, y1 = (float(v) for v in b)
    return (x0, y0, x1, y1)


def _points(p: Any, what: str, min_points: int) -> Points | None:
    """``[[x, y], ...]`` (any sequence or ``[K, 2]`` array) -> a tuple of float pairs, or None."""
    if p is None:
        return None
    try:
        pts = tuple((float(x), float(y)) for x, y in (tuple(q) for q in p))
    except (TypeError, ValueError):
        raise ValueError(f"a {what} is a sequence of (x, y) points, got {p!r}") from None
    if len(pts) < min_points:
        raise ValueError(f"a {what} needs at least {min_points} points, got {len(pts)}")
    return pts


def _plain_points(p: Points | None) -> list[list[float]] | None:
    return None if p is None else [[round(x, _BOX_DIGITS), round(y, _BOX_DIGITS)] for x, y in p]


def _plain(value: Any, key: str = "") -> Any:
    """JSON-ready copy: nested results to dicts, tuples to lists, floats rounded."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.to_dict() if hasattr(value, "to_dict") else {
            f.name: _plain(getattr(value, f.name), f.name) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v, key) for v in value]
    if isinstance(value, float):
        return round(value, _BOX_DIGITS if "box" in key else _CONF_DIGITS)
    return value


@dataclass
class WordResult:
    """A word: a maximal run of non-space characters of a line."""

    text: str
    confidence: float
    box: Box | None = None
    char_confidences: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "confidence": _plain(self.confidence),
                "box": _plain(self.box, "box"),
                "char_confidences": _plain(self.char_confidences)}


@dataclass
class LineResult:
    """A recognised text line.

    ``char_boxes`` (one per character of ``text``, page pixels) come from the frames CTC
    read each character from, so they are narrow (CTC spikes), as kraken's cuts are;
    they and ``words``' boxes exist only when the line's ``box`` is known.
    ``id`` names the line (a record id, an image path); ``extra`` holds anything a
    caller adds (decoder name, scores) and is written by ``to_dict`` as is.
    ``polygon`` (>= 3 points) outlines the line and ``baseline`` (>= 2 points, left to
    right) is where it rests, both page pixels; ``None`` when the layout gave only a box.
    """

    text: str
    confidence: float
    box: Box | None = None
    char_confidences: tuple[float, ...] = ()
    char_boxes: tuple[Box, ...] = ()
    words: list[WordResult] = field(default_factory=list)
    id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    polygon: Points | None = None
    baseline: Points | None = None

    def __post_init__(self) -> None:
        self.box = _box(self.box)
        self.polygon = _points(self.polygon, "line polygon", 3)
        self.baseline = _points(self.baseline, "baseline", 2)
        if self.char_confidences and len(self.char_confidences) != len(self.text):
            raise ValueError(f"{len(self.char_confidences)} character confidences for "
                             f"{len(self.text)} characters")
        if self.char_boxes and len(self.char_boxes) != len(self.text):
            raise ValueError(f"{len(self.char_boxes)} character boxes for {len(self.text)} characters")

    @classmethod
    def from_decoded(cls, decoded: "DecodedLine", box: Sequence[float] | None = None,
                     frame_width: float | None = None, id: str | None = None,
                     extra: dict[str, Any] | None = None, polygon: Any = None,
                     baseline: Any = None) -> "LineResult":
        """Build from a decoder's output.

        ``box`` is the line's xyxy page box and ``frame_width`` the page pixels one CTC
        frame covers (:func:`line_frame_width`); with both, characters and words get boxes.
        ``polygon`` and ``baseline`` are kept as given (see the class docstring).
        """
        b = _box(box)
        char_boxes: tuple[Box, ...] = ()
        if b is not None and frame_width is not None and decoded.spans:
            x0, y0, x1, y1 = b
            char_boxes = tuple((min(x0 + s * frame_width, x1), y0, min(x0 + e * frame_width, x1), y1)
                               for s, e in decoded.spans)
        words = _words(decoded.text, decoded.char_confidences, char_boxes)
        return cls(decoded.text, float(decoded.confidence), b, tuple(decoded.char_confidences),
                   char_boxes, words, id, dict(extra or {}), polygon, baseline)

    def to_dict(self, chars: bool = True) -> dict[str, Any]:
        """Plain values for JSON; ``chars=False`` leaves out the per-character lists."""
        d: dict[str, Any] = {"text": self.text, "confidence": _plain(self.confidence),
                             "box": _plain(self.box, "box")}
        if self.polygon is not None:
            d["polygon"] = _plain_points(self.polygon)
        if self.baseline is not None:
            d["baseline"] = _plain_points(self.baseline)
        if self.id is not None:
            d = {"id": self.id, **d}
        if chars:
            d["char_confidences"] = _plain(self.char_confidences)
            d["char_boxes"] = _plain(self.char_boxes, "box")
        d["words"] = [w.to_dict() if chars else {k: v for k, v in w.to_dict().items()
                                                  if k != "char_confidences"} for w in self.words]
        d.update(_plain(self.extra))
        return d


@dataclass
class RegionResult:
    """A text region: its box (and polygon), its type, the layout model's score and its lines.

    ``type`` is one of :data:`REGION_TYPES`; a printed region's lines have empty text unless
    the pipeline was asked to read printed text too (``recognized`` says whether it was).
    """

    box: Box | None
    confidence: float
    lines: list[LineResult] = field(default_factory=list)
    id: str | None = None
    polygon: Points | None = None
    type: str = "handwritten"
    recognized: bool = True

    def __post_init__(self) -> None:
        self.box = _box(self.box)
        self.polygon = _points(self.polygon, "region polygon", 3)
        if self.type not in REGION_TYPES:
            raise ValueError(f"region type must be one of {', '.join(REGION_TYPES)}, got {self.type!r}")

    @property
    def text(self) -> str:
        """The lines' text, one per line."""
        return "\n".join(line.text for line in self.lines)

    def to_dict(self, chars: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "box": _plain(self.box, "box"),
                             "confidence": _plain(self.confidence)}
        if self.polygon is not None:
            d["polygon"] = _plain_points(self.polygon)
        if not self.recognized:
            d["recognized"] = False
        d["lines"] = [line.to_dict(chars) for line in self.lines]
        return {"id": self.id, **d} if self.id is not None else d


@dataclass
class PageResult:
    """A recognised page: its size, regions, per-stage seconds and warnings.

    ``warnings`` say why a result is empty (a blank page, a tiny image); ``timings`` hold
    seconds per stage (area, lines, recognize, decode); ``extra`` the backend and decoder.
    """

    width: int
    height: int
    regions: list[RegionResult] = field(default_factory=list)
    id: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def lines(self) -> list[LineResult]:
        """Every recognised line of the page, in reading order (a printed region that was not
        read contributes none)."""
        return [line for r in self.regions if r.recognized for line in r.lines]

    @property
    def text(self) -> str:
        """The page's text: one line per text line, regions separated by a blank line."""
        return "\n\n".join(r.text for r in self.regions if r.lines and r.recognized)

    @property
    def confidence(self) -> float:
        """Mean line confidence weighted by line length (0 for a page without text)."""
        lines = self.lines
        n = sum(max(len(ln.text), 1) for ln in lines)
        return sum(ln.confidence * max(len(ln.text), 1) for ln in lines) / n if n else 0.0

    def to_dict(self, chars: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"width": self.width, "height": self.height, "text": self.text,
                             "confidence": _plain(self.confidence),
                             "regions": [r.to_dict(chars) for r in self.regions],
                             "timings": {k: round(v, 4) for k, v in self.timings.items()},
                             "warnings": list(self.warnings)}
        d.update(_plain(self.extra))
        return {"id": self.id, **d} if self.id is not None else d


def _words(text: str, confs: Sequence[float], boxes: Sequence[Box]) -> list[WordResult]:
    """Split a line into words at spaces; a word's confidence is the mean of its characters'."""
    out: list[WordResult] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        j = i
        while j < n and not text[j].isspace():
            j += 1
        cc = tuple(confs[i:j]) if confs else ()
        conf = sum(cc) / len(cc) if cc else 0.0
        box = None
        if boxes:
            wb = boxes[i:j]
            box = (min(b[0] for b in wb), min(b[1] for b in wb), max(b[2] for b in wb), max(b[3] for b in wb))
        out.append(WordResult(text[i:j], float(conf), box, cc))
        i = j
    return out


def line_frame_width(crop_width: int, resized_width: int, width_downsample: int) -> float:
    """Page pixels covered by one CTC frame of a line crop ``crop_width`` pixels wide.

    The crop was resized to ``resized_width`` columns (:meth:`LineGeometry.target_width`)
    and the recogniser reads ``width_downsample`` columns per frame.
    """
    return float(width_downsample) * float(crop_width) / float(max(resized_width, 1))
