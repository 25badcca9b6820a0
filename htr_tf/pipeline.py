"""The full-page pipeline: page image -> handwritten area -> lines -> recognition -> decoder.

A :class:`Pipeline` holds a *backend* (where the networks run) and a decoder (CTC
post-processing, always in this process).  Backends differ only in how they run the three
networks; every image rule (line crops, resizing, padding) lives here and in
:mod:`htr_tf.geometry`, so the same page gives the same text on every backend:

* ``local``: the Keras bundles in this process (:class:`LocalBackend`);
* ``tflite``: TFLite files on LiteRT (:mod:`htr_tf.tflite`);
* ``grpc``: a TF Serving (or ``htr serve``) model server (:mod:`htr_tf.serving.client`).

A backend provides (:class:`Backend`): ``charset``, ``geometry``, ``width_downsample`` and
``decoding`` (the recogniser's tuned decoder settings, see
:func:`htr_tf.decode.decoder_defaults`; all read from the models it runs, never configured
twice), ``find_area(page)``,
``find_lines(page, region)`` and ``log_probs(images, widths)`` for uint8 line images
already resized to ``geometry.height`` and right-padded with paper (255): the inputs of
the exported recogniser's ``recognize`` signature.

>>> pipe = load_pipeline()                                   # the bundled models  # doctest: +SKIP
>>> result = pipe.run("page.png")                                                  # doctest: +SKIP
>>> print(result.text)                                                             # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

import numpy as np

from htr_tf import crop as _crop
from htr_tf.charset import Charset
from htr_tf.crop import isolate_line
from htr_tf.errors import ConfigError, DataError
from htr_tf.geometry import LineGeometry
from htr_tf.results import LineResult, PageResult, RegionResult, line_frame_width

if TYPE_CHECKING:
    from htr_tf.decode.ctc import Decoder
    from htr_tf.line_type import LineTypeConfig

__all__ = ["Backend", "LocalBackend", "Pipeline", "PipelineOptions", "PageLayout", "load_pipeline", "make_backend",
           "make_regions",
           "available_backends", "register_backend", "isolate_line",
           "MIN_PAGE_SIDE"]

#: Pages smaller than this on either side hold no readable text: they give an empty result.
MIN_PAGE_SIDE = 8
#: How the pipeline can cut a detected line for the recogniser (:attr:`PipelineOptions.line_crop`).
LINE_CROPS = ("polygon", "box", "apart")


class Backend(Protocol):
    """Where the three networks run; see the module docstring."""

    name: str
    charset: Charset
    geometry: LineGeometry
    width_downsample: int
    #: The recogniser's ``htr.json`` ``decoding`` section ({} when it has none).
    decoding: dict[str, Any]

    def find_area(self, page: np.ndarray) -> tuple[np.ndarray, float]:
        """Handwritten area of a gray uint8 page: (xyxy box in page px, score in [0, 1])."""

    def find_lines(self, page: np.ndarray, region: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Lines inside ``region``: (boxes ``[N, 4]`` xyxy page px in reading order, scores ``[N]``)."""

    def log_probs(self, images: np.ndarray, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 ``[B, height, W]`` paper-padded lines and true widths -> (``[B, T, C]``, ``[B]``)."""


# -- the in-process backend ------------------------------------------------------------------------
class LayoutModelsMixin:
    """``find_area`` / ``find_lines`` of a backend over its ``paragraph`` and ``lines`` models
    (Keras, LiteRT or gRPC: each has ``detect``).  No area model: the whole page is the area;
    no line detector (loaded for line images only): a clear error."""

    paragraph: Any = None
    lines: Any = None

    def find_area(self, page: np.ndarray) -> tuple[np.ndarray, float]:
        if self.paragraph is None:
            h, w = page.shape[:2]
            return np.array([0, 0, w, h], np.float32), 0.0
        return self.paragraph.detect(page)

    def find_lines(self, page: np.ndarray, region: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if self.lines is None:
            raise ConfigError("this backend has no line detector (loaded for line images only: "
                              "recognizer_only=True)")
        return self.lines.detect(page, region)


class LocalBackend(LayoutModelsMixin):
    """The Keras bundles, run in this process (TensorFlow)."""

    name = "local"

    def __init__(self, recognizer: Any, paragraph: Any = None, lines: Any = None, jit: bool = False) -> None:
        from htr_tf.recognize import KerasLineModel

        self.recognizer = recognizer
        self.paragraph = paragraph
        self.lines = lines
        self._line_model = KerasLineModel(recognizer, jit=jit)
        self.charset = recognizer.charset
        self.geometry = recognizer.geometry
        self.width_downsample = self._line_model.width_downsample
        self.decoding = self._line_model.decoding

    @classmethod
    def load(cls, recognizer: str | os.PathLike | None = None, paragraph: str | os.PathLike | None = None,
             lines: str | os.PathLike | None = None, use_paragraph: bool = True,
             recognizer_only: bool = False, jit: bool = False) -> "LocalBackend":
        """Load bundle directories; ``None`` takes the bundled model.

        ``use_paragraph=False`` skips the handwritten-area model (the whole page is the area);
        ``recognizer_only=True`` loads no layout model (for line images); ``jit=True``
        (``--backend-option jit=true``) runs the recogniser compiled by XLA, faster once the few
        batch shapes it pads to are compiled (many pages; see ``Recognizer.log_probs``).
        """
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from htr_tf.bundle import require_bundled
        from htr_tf.models import Recognizer
        from htr_tf.models.lines import LineDetector
        from htr_tf.models.paragraph import ParagraphModel

        rec = Recognizer.load(recognizer if recognizer is not None else require_bundled("recognizer"))
        if recognizer_only:
            return cls(rec, jit=jit)
        par = None
        if use_paragraph:
            par = ParagraphModel.load(paragraph if paragraph is not None else require_bundled("paragraph"))
        det = LineDetector.load(lines if lines is not None else require_bundled("lines"))
        return cls(rec, par, det, jit=jit)

    def log_probs(self, images: np.ndarray, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._line_model.log_probs(images, widths)


# -- backend registry ----------------------------------------------------------------------------
#: name -> "module:callable" (imported on first use, so TFLite and gRPC stay optional).
_BACKENDS: dict[str, str | Callable[..., Backend]] = {
    "local": "htr_tf.pipeline:LocalBackend.load",
    "tflite": "htr_tf.tflite.runtime:TFLiteBackend.load",
    "grpc": "htr_tf.serving.client:GrpcBackend.connect",
}


def register_backend(name: str, factory: str | Callable[..., Backend]) -> None:
    """Add a backend: ``factory(**options)`` returns a :class:`Backend`."""
    _BACKENDS[name] = factory


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def make_backend(name: str = "local", **options: Any) -> Backend:
    """The backend ``name`` built with ``options`` (see each backend's factory)."""
    if name not in _BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; available: {', '.join(available_backends())}")
    factory = _BACKENDS[name]
    if isinstance(factory, str):
        mod_name, _, attr = factory.partition(":")
        try:
            obj: Any = importlib.import_module(mod_name)
        except ImportError as e:
            raise ConfigError(f"backend {name!r} is not available in this installation: {e}") from None
        for part in attr.split("."):
            obj = getattr(obj, part)
        factory = obj
    return factory(**options)


# -- the pipeline ----------------------------------------------------------------------------------
@dataclass
class PipelineOptions:
    """How pages are cut into lines and lines batched."""

    #: Lines recognised per batch (lines of similar width go together).
    batch_size: int = 16
    #: Pixels added around each detected line box before cropping (x, y).
    line_pad_x: int = _crop.LINE_PAD_X
    line_pad_y: int = _crop.LINE_PAD_Y
    #: Lines whose detector score is below this are dropped.
    min_line_score: float = 0.0
    #: Run the handwritten-area model; without it the whole page is the area.
    find_area: bool = True
    #: Paint out ink of neighbouring lines that reaches into a crop (:func:`isolate_line`).
    isolate_lines: bool = True
    #: How a detected line is cut for the recogniser: ``polygon`` (its outline from
    #: :func:`htr_tf.line_shapes.line_shapes`, ink outside it painted out by
    #: :func:`htr_tf.crop.cut_polygon`, as ``htr data xml-prepare`` cuts training lines) or
    #: ``box`` (:func:`cut_line`: padding and ``isolate_lines``).  ``polygon`` is the default:
    #: on the validation pages (greedy page CER, 2026-12-06) it read copiste 22.8 % against
    #: 25.9 % for ``box``, peraire 35.7 against 50.5 %, synthetic forms 5.67 against 5.76 %.
    #: GW's tight lines (no validation pages of their own) read better with ``box``.
    #: ``apart`` (:func:`htr_tf.crop.cut_apart`) is the box grown to hold the polygon with only
    #: the ink of *other* lines' polygons painted out.
    line_crop: str = "polygon"
    #: Trim the line crops' blank margins as the recogniser's geometry says before reading them
    #: (:func:`htr_tf.geometry.trim_margins`, always done for line images handed in).  Off: the
    #: layout cuts its lines to their ink already, and on the validation pages with soup P9
    #: (trained without trimming, 2026-12-07) trimming read copiste pages at 17.83 % CER against
    #: 15.43 % (small print kept above the confidence floor, reframed lines misread), GW 10.72
    #: against 10.48, peraire 22.11 against 22.68, synthetic forms v1 2.98 against 3.14.  With
    #: soup P11 (trained on trimmed lines) the ground-truth lines read better trimmed (copiste
    #: 12.73 against 13.05 %, peraire 18.10 against 20.62) but the pages not: copiste 16.95
    #: against 14.78 (the small printed consent lines again), peraire 21.02 / 22.11, GW 10.08 /
    #: 10.00, synthetic v1 2.73 / 3.08.
    trim_margins: bool = False
    #: Level skewed line crops before reading them (:func:`htr_tf.geometry.level_line`, without
    #: trimming) when the recogniser's geometry says ``deskew`` (it was trained on levelled lines).
    #: Off: the layout cuts lines along their polygons, and on the validation pages soup P12
    #: (trained on levelled lines, 2026-12-07) read them worse levelled: copiste 15.99 % page CER
    #: against 14.72, peraire 22.31 / 21.53, GW 10.20 / 9.71, synthetic v1 forms 5.83 / 2.94.
    level_lines: bool = False
    #: Read each line in these views too and keep the text they agree on most
    #: (:mod:`htr_tf.readings`, e.g. ``("base", "small", "narrow", "wide", "thin")``); ``()`` reads
    #: each line once, None as the recogniser's ``decoding`` section says.  Each view is one more
    #: pass of the recogniser.
    variants: tuple[str, ...] | None = None
    #: Drop detected lines that hold no writing of their own (a rule of ruled paper).
    drop_empty_lines: bool = True
    #: Leave out of the page the lines the recogniser reads with a confidence below this: a
    #: detection on small print or a smudge reads as garbage (0 keeps every line).
    min_line_confidence: float = 0.0
    #: The same, relative to the page: leave out lines read with a confidence below this fraction
    #: of the median confidence of the page's lines (pages of at least three lines), so a hard
    #: hand read at low confidence throughout keeps its lines, while garbage stands out.  0.7 was
    #: chosen on the validation pages (greedy page CER, 2026-12-06 night: copiste 19.32 -> 17.24 %,
    #: mostly the forms' small printed header read as garbage; peraire 26.42 -> 26.32; synthetic
    #: forms 4.82, unchanged; 0.8 and absolute floors of 0.5-0.7 were no better).  0.72 since soup
    #: P13 re-reads dense lines (``geometry.reread_density``): the surer of two readings of a
    #: printed block read as garbage rose to 0.64 against a page median of 0.91, and copiste
    #: validation pages read 14.91 % at 0.7, 13.30 at 0.72 and 0.75 (peraire, GW and synthetic
    #: forms unchanged).  0.75 since soup P15 (sparse lines re-read too): that block's garbage
    #: passed 0.72 again on two copiste test pages; copiste validation pages read 14.83 % at 0.72
    #: and 13.22 at 0.75, 0.78 and 0.8 (peraire, GW and synthetic v1 forms unchanged).
    min_relative_confidence: float = 0.75
    #: Look for text lines outside the handwritten area (a form's printed header and prompt,
    #: a letterhead: :mod:`htr_tf.printed`) and report them as ``printed`` regions.
    find_printed: bool = True
    #: The line detector is given at least this fraction of the page's width around the area
    #: (:func:`detection_region`): it resizes its region to a fixed width, so a tight area
    #: round one short line would blow the line up past the sizes it learnt, and split it.
    min_region_width: float = 0.5
    #: Classify the lines found outside the handwritten area as printed or handwritten with the
    #: line detector's classifier (:mod:`htr_tf.line_type`; none: all are printed), so a date
    #: line, a signature or a page id written outside the main block is read with it.
    classify_outside: bool = True
    #: Recognise the printed regions too (``htr ocr --include-printed``); otherwise their
    #: lines have boxes and polygons but no text, and the page text leaves them out.
    read_printed: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.line_pad_x < 0 or self.line_pad_y < 0:
            raise ConfigError("line padding must be >= 0")
        for name in ("min_line_confidence", "min_relative_confidence"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.line_crop not in LINE_CROPS:
            raise ConfigError(f"line_crop must be one of {', '.join(LINE_CROPS)}, got {self.line_crop!r}")


@dataclass
class PageLayout:
    """What :meth:`Pipeline.find_layout` finds on a page: the handwritten ``area`` (xyxy page
    px) and its score, the handwritten lines in it (boxes ``[N, 4]`` in the detector's order,
    scores, :class:`~htr_tf.line_shapes.LineShape` each) and the printed lines outside it, and
    the seconds each stage took (``timings``: area, lines, printed)."""

    area: np.ndarray
    area_score: float
    boxes: np.ndarray
    scores: np.ndarray
    shapes: list[Any]
    printed_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    printed_scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    printed_shapes: list[Any] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def add_lines(self, boxes: np.ndarray, scores: np.ndarray, shapes: Sequence[Any]) -> None:
        """Add handwritten lines found outside the area, all lines kept top to bottom."""
        if len(boxes) == 0:
            return
        b = np.concatenate([self.boxes.reshape(-1, 4), np.asarray(boxes, np.float32).reshape(-1, 4)])
        s = np.concatenate([self.scores.reshape(-1), np.asarray(scores, np.float32).reshape(-1)])
        sh = list(self.shapes) + list(shapes)
        order = np.lexsort((b[:, 0], b[:, 1]))
        self.boxes, self.scores, self.shapes = b[order], s[order], [sh[k] for k in order]

    def printed_lines(self) -> list[LineResult]:
        """The printed lines as results without text (reported, not read)."""
        return [LineResult(text="", confidence=0.0, box=tuple(float(v) for v in b), polygon=sh.polygon,
                           baseline=sh.baseline, extra={"detector_score": float(sc)})
                for b, sh, sc in zip(self.printed_boxes, self.printed_shapes, self.printed_scores)]

    def regions(self) -> list[RegionResult]:
        """The page's regions without text (handwritten lines unread): what the outputs and
        :func:`htr_tf.printed.evaluate_printed` see of the layout."""
        hand = [LineResult(text="", confidence=0.0, box=tuple(float(v) for v in b), polygon=sh.polygon,
                           baseline=sh.baseline) for b, sh in zip(self.boxes, self.shapes)]
        return make_regions(hand, self.area, self.area_score, printed=self.printed_lines())


class Pipeline:
    """Page images to :class:`~htr_tf.results.PageResult` over a backend, with a named decoder.

    A decoder named here starts from the recogniser's tuned settings (the backend's
    ``decoding``), which ``decoder_options`` override; a decoder object is used as is.
    """

    def __init__(self, backend: Backend, decoder: "str | Decoder" = "greedy",
                 options: PipelineOptions | None = None, decoder_options: dict[str, Any] | None = None) -> None:
        from htr_tf.decode import build_decoder
        from htr_tf.readings import resolve_variants

        self.backend = backend
        self.decoder = build_decoder(decoder, getattr(backend, "decoding", None), decoder_options)
        self.options = options or PipelineOptions()
        #: The views each line is read in (:attr:`PipelineOptions.variants`, resolved).
        self.variants = resolve_variants(self.options.variants, getattr(backend, "decoding", None))

    @property
    def charset(self) -> Charset:
        return self.backend.charset

    @property
    def geometry(self) -> LineGeometry:
        return self.backend.geometry

    # -- one page ---------------------------------------------------------------------------------
    def run(self, page: "np.ndarray | str | os.PathLike | bytes", id: str | None = None,
            layout: "PageLayout | None" = None) -> PageResult:
        """Recognise one page (a gray/colour array, an image path, or encoded bytes).  ``layout``:
        this page's :meth:`find_layout`, found already (several decoders reading one page share it)."""
        gray, name = _as_gray(page)
        return self._run_gray(gray, id if id is not None else name, layout)

    __call__ = run

    def _run_gray(self, gray: np.ndarray, id: str | None, layout: "PageLayout | None" = None) -> PageResult:
        h, w = gray.shape
        timings: dict[str, float] = {}
        result = PageResult(width=w, height=h, id=id, timings=timings,
                            extra={"backend": self.backend.name, "decoder": self.decoder.name,
                                   **({"variants": list(self.variants)} if self.variants else {})})
        if h < MIN_PAGE_SIDE or w < MIN_PAGE_SIDE:
            result.warnings.append(f"image is {w}x{h} pixels: too small to hold text")
            return result
        if layout is None:
            layout = self.find_layout(gray)
        timings.update(layout.timings)
        o = self.options
        printed = layout.printed_lines()
        if o.read_printed:
            printed = self._recognized(gray, layout.printed_boxes, layout.printed_shapes, layout.printed_scores,
                                       timings)
        lines = self._recognized(gray, layout.boxes, layout.shapes, layout.scores, timings)
        floor = o.min_line_confidence
        if o.min_relative_confidence > 0 and len(lines) >= 3:
            floor = max(floor, o.min_relative_confidence * float(np.median([ln.confidence for ln in lines])))
        if floor > 0:
            kept = [ln for ln in lines if ln.confidence >= floor]
            if len(kept) < len(lines):
                result.warnings.append(f"{len(lines) - len(kept)} line(s) read with confidence below "
                                       f"{floor:.2g} left out")
            lines = kept
        result.regions.extend(make_regions(lines, layout.area, layout.area_score, printed=printed,
                                           read_printed=o.read_printed))
        if not lines:
            result.warnings.append("no text lines found")
        return result

    def find_layout(self, gray: np.ndarray, timings: dict[str, float] | None = None) -> "PageLayout":
        """The layout of a gray uint8 page, before recognition: the handwritten area, the lines
        found in it and, with ``find_printed`` or ``read_printed``, the lines outside it
        (:mod:`htr_tf.printed`): those the line-type classifier takes for handwriting
        (``classify_outside``, :mod:`htr_tf.line_type`) join the handwritten lines, the rest are
        printed; seconds per stage go into ``timings`` (area, lines, printed), and into the layout's."""
        timings = {} if timings is None else timings
        h, w = gray.shape[:2]
        o = self.options
        t = time.perf_counter()
        if o.find_area:
            area, area_score = self.backend.find_area(gray)
            area = np.asarray(area, np.float32).reshape(4)
        else:
            area, area_score = np.array([0, 0, w, h], np.float32), 0.0
        timings["area"] = time.perf_counter() - t
        t = time.perf_counter()
        boxes, scores = self.backend.find_lines(gray, detection_region(area, w, o.min_region_width))
        boxes, scores, shapes = self._kept_lines(gray, boxes, scores)
        timings["lines"] = time.perf_counter() - t
        layout = PageLayout(area, float(area_score), boxes, scores, shapes, timings=timings)
        if o.find_printed or o.read_printed:
            from htr_tf.printed import find_printed_lines

            t = time.perf_counter()
            pb, ps = find_printed_lines(self.backend.find_lines, gray, area, boxes)
            pb, ps, pshapes = self._kept_lines(gray, pb, ps)
            classifier = self.line_type
            if classifier is not None and o.classify_outside and len(pb):
                from htr_tf.line_type import printed_probability

                crops = [_crop.cut_line(gray, b, pad_x=o.line_pad_x, pad_y=o.line_pad_y, isolate=False)[0] for b in pb]
                hand = printed_probability(classifier, crops) < classifier.threshold
                layout.add_lines(pb[hand], ps[hand], [sh for sh, k in zip(pshapes, hand) if k])
                pb, ps, pshapes = pb[~hand], ps[~hand], [sh for sh, k in zip(pshapes, hand) if not k]
            layout.printed_boxes, layout.printed_scores, layout.printed_shapes = pb, ps, pshapes
            timings["printed"] = time.perf_counter() - t
        return layout

    @property
    def line_type(self) -> "LineTypeConfig | None":
        """The line detector's printed-or-handwritten classifier (:mod:`htr_tf.line_type`), if any."""
        config = getattr(getattr(self.backend, "lines", None), "config", None)
        return getattr(config, "line_type", None)

    def _recognized(self, gray: np.ndarray, boxes: np.ndarray, shapes: Sequence[Any], scores: np.ndarray,
                    timings: dict[str, float]) -> list[LineResult]:
        """:meth:`recognize_boxes` with the detector's scores kept and stage seconds added up."""
        stage: dict[str, float] = {}
        lines = self.recognize_boxes(gray, boxes, stage, shapes=shapes)
        for k, v in stage.items():
            timings[k] = timings.get(k, 0.0) + v
        for line, s in zip(lines, scores):
            line.extra["detector_score"] = float(s)
        return lines

    def _kept_lines(self, gray: np.ndarray, boxes: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, list[Any]]:
        """Detected lines above ``min_line_score`` with their shapes, those without writing of
        their own dropped (``drop_empty_lines``)."""
        from htr_tf.line_shapes import line_shapes

        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        keep = scores >= self.options.min_line_score
        boxes, scores = boxes[keep], scores[keep]
        shapes = line_shapes(gray, boxes)
        if self.options.drop_empty_lines:
            keep = np.array([sh.from_ink for sh in shapes], bool).reshape(-1)
            boxes, scores = boxes[keep], scores[keep]
            shapes = [sh for sh, k in zip(shapes, keep) if k]
        return boxes, scores, shapes

    def recognize_boxes(self, gray: np.ndarray, boxes: np.ndarray,
                        timings: dict[str, float] | None = None,
                        shapes: Sequence[Any] | None = None) -> list[LineResult]:
        """Recognise the lines at ``boxes`` (xyxy page px) of a gray page, in the order given.

        With ``shapes`` (:class:`~htr_tf.line_shapes.LineShape` per box) the lines get their
        polygon and baseline, and with ``options.line_crop == "polygon"`` the recogniser reads
        the polygon-masked crop (a line without writing of its own keeps the box crop).
        """
        from htr_tf.recognize import recognize_crops

        o, g = self.options, self.geometry
        crops, pboxes = [], []
        threshold = _crop.ink_threshold(gray) if shapes is not None and o.line_crop != "box" else None
        for k, b in enumerate(np.asarray(boxes, np.float32).reshape(-1, 4)):
            shape = shapes[k] if shapes is not None else None
            if threshold is not None and shape is not None and shape.from_ink and o.line_crop == "apart":
                others = [sh.polygon for j, sh in enumerate(shapes) if j != k and sh.from_ink]
                c, pb = _crop.cut_apart(gray, b, shape.polygon, others, pad_x=o.line_pad_x, pad_y=o.line_pad_y,
                                        threshold=threshold)
            elif threshold is not None and shape is not None and shape.from_ink:
                c, cb = _crop.cut_polygon(gray, shape.polygon, threshold=threshold)
                pb = tuple(float(v) for v in cb)
            else:
                c, pb = cut_line(gray, b, o)
            crops.append(c)
            pboxes.append(pb)
        if o.level_lines and g.deskew and not o.trim_margins:  # trimming levels them already
            from htr_tf.geometry import level_line

            crops = [level_line(np.asarray(c)) for c in crops]
        stage: dict[str, float] = {}
        decoded = recognize_crops(self.backend, crops, self.decoder, o.batch_size, timings=stage,
                                  trim=o.trim_margins, variants=self.variants)
        if timings is not None:
            timings.update(stage)
        out = []
        for k, (d, c, b) in enumerate(zip(decoded, crops, pboxes)):
            ds = self.backend.width_downsample
            resized = g.read_width(g.target_width(*c.shape[:2]), d.num_frames, ds)  # re-read lines
            fw = line_frame_width(c.shape[1], resized, ds)
            shape = shapes[k] if shapes is not None else None
            out.append(LineResult.from_decoded(d, box=b, frame_width=fw, id=f"r1l{k + 1}",
                                               polygon=shape.polygon if shape is not None else None,
                                               baseline=shape.baseline if shape is not None else None))
        return out


def detection_region(area: Sequence[float], page_width: int, min_fraction: float) -> np.ndarray:
    """``area`` (xyxy) widened about its centre to at least ``min_fraction`` of the page width,
    kept on the page: the region the line detector reads (see ``PipelineOptions.min_region_width``).

    >>> detection_region([100, 150, 480, 220], 1600, 0.5).tolist()
    [0.0, 150.0, 800.0, 220.0]
    """
    a = np.asarray(area, np.float32).reshape(4).copy()
    need = min_fraction * float(page_width) - float(a[2] - a[0])
    if need > 0:
        a[0], a[2] = a[0] - need / 2, a[2] + need / 2
        shift = max(0.0, -float(a[0])) - max(0.0, float(a[2]) - page_width)
        a[0], a[2] = max(0.0, a[0] + shift), min(float(page_width), a[2] + shift)
    return a


def make_regions(lines: Sequence[LineResult], area: Sequence[float], score: float,
                 printed: Sequence[LineResult] = (), read_printed: bool = False) -> list[RegionResult]:
    """Lines (in the detector's order) grouped into handwritten regions, and ``printed`` lines
    (found outside the area, :mod:`htr_tf.printed`) into printed regions
    (:func:`htr_tf.regions.group_lines`), all regions in reading order
    (:func:`htr_tf.regions.reading_order`), lines renamed ``r<i>l<j>``.  A region's polygon is
    the hull of its lines' polygons; a handwritten region's box is the handwritten ``area``
    when the page has one, else the union of its lines' boxes.  No handwritten lines: one
    empty handwritten region over ``area``.  Printed regions are ``recognized`` only with
    ``read_printed``."""
    from htr_tf.regions import group_lines, reading_order, region_outline

    area_box = tuple(float(v) for v in area)
    found: list[tuple[str, list[LineResult]]] = []
    for kind, members in (("handwritten", list(lines)), ("printed", list(printed))):
        if members:
            boxes = np.array([ln.box for ln in members], np.float32)
            found += [(kind, [members[k] for k in group]) for group in group_lines(boxes)]
    if not lines:
        found.insert(0, ("handwritten", []))
    extents = np.array([(min(ln.box[0] for ln in m), min(ln.box[1] for ln in m), max(ln.box[2] for ln in m),
                         max(ln.box[3] for ln in m)) if m else area_box for _, m in found], np.float32)
    heights = [ln.box[3] - ln.box[1] for ln in lines] or [ln.box[3] - ln.box[1] for ln in printed] or [0.0]
    n_hand = sum(kind == "handwritten" for kind, _ in found)
    out = []
    for i, k in enumerate(reading_order(extents, float(np.median(heights)))):
        kind, members = found[k]
        for j, ln in enumerate(members):
            ln.id = f"r{i + 1}l{j + 1}"
        if not members:
            out.append(RegionResult(box=area_box, confidence=score, lines=[], id=f"r{i + 1}"))
            continue
        outlines = [np.asarray(ln.polygon if ln.polygon is not None else
                               [(ln.box[0], ln.box[1]), (ln.box[2], ln.box[1]), (ln.box[2], ln.box[3]),
                                (ln.box[0], ln.box[3])], np.float32) for ln in members]
        one = kind == "handwritten" and n_hand == 1
        box = area_box if one else tuple(float(v) for v in extents[k])
        conf = score if kind == "handwritten" else float(np.mean([ln.extra.get("detector_score", 0.0)
                                                                   for ln in members]))
        out.append(RegionResult(box=box, confidence=conf, lines=members,
                                id=f"r{i + 1}", polygon=region_outline(outlines), type=kind,
                                recognized=kind == "handwritten" or read_printed))
    return out


def cut_line(gray: np.ndarray, box: Sequence[float], options: PipelineOptions
             ) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The image the recogniser gets for the line at ``box`` (xyxy page px) of a gray page, and
    the padded box it was cut from, with the options' padding and neighbour-ink removal
    (:func:`htr_tf.crop.cut_line`, which training data made to look like the pipeline's lines
    is cut by too)."""
    return _crop.cut_line(gray, box, pad_x=options.line_pad_x, pad_y=options.line_pad_y,
                          isolate=options.isolate_lines)


def _as_gray(page: Any) -> tuple[np.ndarray, str | None]:
    """Any page input -> (2-D uint8 gray, a name for messages)."""
    from htr_tf.fileio import decode_image, read_image, to_gray_uint8

    if isinstance(page, (str, os.PathLike)):
        return read_image(page), str(page)
    if isinstance(page, (bytes, bytearray, memoryview)):
        return decode_image(bytes(page)), None
    a = np.asarray(page)
    if a.size == 0:
        raise DataError(f"page image is empty ({list(a.shape)})")
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise DataError(f"a page is a 2-D gray or 3-D colour image, got shape {list(a.shape)}")
    if a.dtype.kind not in "uifb":
        raise DataError(f"page image has dtype {a.dtype}, not a number type")
    return to_gray_uint8(a), None


def load_pipeline(backend: str = "local", decoder: "str | Decoder" = "greedy",
                  options: PipelineOptions | None = None, decoder_options: dict[str, Any] | None = None,
                  **backend_options: Any) -> Pipeline:
    """A :class:`Pipeline` over ``make_backend(backend, **backend_options)``.

    With no options the local backend runs the bundled models.
    """
    opts = options or PipelineOptions()
    if backend in ("local", "tflite", "grpc") and not opts.find_area:
        backend_options.setdefault("use_paragraph", False)
    return Pipeline(make_backend(backend, **backend_options), decoder, opts, decoder_options)
