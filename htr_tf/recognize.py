"""Line crops to decoded lines: the one path every reader of text lines takes.

``htr ocr`` (pages and line images), ``htr evaluate``, ``htr lm tune``, the gRPC client and
the benchmarks all recognise lines with :func:`recognize_crops` (or, when they decode the
same network outputs many times, :func:`crop_log_probs`):

1. crops are grouped into batches of similar resized width (:func:`width_buckets`), so
   little padding is computed;
2. each batch is resized to the model's line height and right-padded with paper into one
   uint8 ``[B, height, W]`` array plus the true widths (:func:`line_batch`, ``W`` a multiple
   of ``geometry.width_multiple``): the input of the exported recogniser's ``recognize``
   signature, so every backend gets identical pixels;
3. a *line model* turns the batch into CTC log-probabilities: anything with ``charset``,
   ``geometry``, ``decoding`` and ``log_probs(images, widths)`` on such batches, i.e. every
   pipeline backend (Keras in process, LiteRT, gRPC; :mod:`htr_tf.pipeline`);
4. a decoder (:mod:`htr_tf.decode`) turns them into :class:`~htr_tf.decode.DecodedLine`.

Results come back in the order of the crops.

>>> width_buckets([50, 10, 40, 20, 30], 2)
[array([1, 3]), array([4, 2]), array([0])]
>>> from htr_tf.geometry import LineGeometry
>>> images, widths = line_batch([np.zeros((32, 100), np.uint8)], LineGeometry(height=16))
>>> images.shape, images.dtype, widths.tolist(), int(images[0, 0, -1])
((1, 16, 56), dtype('uint8'), [50], 255)
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterator, Protocol, Sequence

import numpy as np

from htr_tf.errors import DataError

if TYPE_CHECKING:
    from htr_tf.charset import Charset
    from htr_tf.decode.ctc import DecodedLine, Decoder
    from htr_tf.geometry import LineGeometry

__all__ = ["LineModel", "width_buckets", "line_batch", "pad_lines", "model_input", "reread_lines",
           "reread_dense", "batched_log_probs", "variant_log_probs", "crop_log_probs", "recognize_crops", "KerasLineModel", "line_model"]


class LineModel(Protocol):
    """What :func:`recognize_crops` needs of a recogniser (every pipeline backend is one)."""

    charset: "Charset"
    geometry: "LineGeometry"
    width_downsample: int
    decoding: dict[str, Any]

    def log_probs(self, images: np.ndarray, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 ``[B, height, W]`` paper-padded lines and true widths -> (``[B, T, C]``, ``[B]``)."""


def width_buckets(widths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar width (sorted by width, stable), to limit padding."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.argsort(np.asarray(widths, np.int64), kind="stable")
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]


def line_batch(crops: Sequence[np.ndarray], geometry: "LineGeometry", trim: bool = True
               ) -> tuple[np.ndarray, np.ndarray]:
    """Resize 2-D uint8 line crops to ``geometry`` (framed first by
    :func:`htr_tf.geometry.frame_line` unless ``trim`` is False) and right-pad them with paper
    (255) into uint8 ``[B, height, W]`` plus their int32 widths; ``W`` is the widest rounded up
    to ``geometry.width_multiple``."""
    from htr_tf.geometry import resize_line

    return pad_lines([resize_line(np.asarray(c), geometry, trim) for c in crops], geometry)


def pad_lines(resized: Sequence[np.ndarray], geometry: "LineGeometry") -> tuple[np.ndarray, np.ndarray]:
    """Lines resized to ``geometry.height`` right-padded with paper (255) into uint8
    ``[B, height, W]`` plus their int32 widths; ``W`` is the widest rounded up to
    ``geometry.width_multiple``."""
    widths = np.array([r.shape[1] for r in resized], np.int32)
    W = geometry.padded_width(int(widths.max()) if len(widths) else geometry.min_width)
    out = np.full((len(resized), geometry.height, W), 255, np.uint8)
    for i, r in enumerate(resized):
        out[i, :, : r.shape[1]] = r
    return out, widths


def model_input(images: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """A :func:`line_batch` -> the Keras recogniser's float32 ``[B, H, W, 1]`` input: ink positive
    (``1 - x/255``, :func:`htr_tf.geometry.normalize`), columns past each width 0 (blank paper).
    The exported ``recognize`` signature does the same in its graph."""
    from htr_tf.geometry import normalize

    imgs = np.asarray(images)
    if imgs.ndim != 3 or imgs.dtype != np.uint8:
        raise DataError(f"expected uint8 line images [B, H, W], got {imgs.dtype} {list(imgs.shape)}")
    cols = np.arange(imgs.shape[2])[None, None, :] < np.asarray(widths).reshape(-1, 1, 1)
    return np.where(cols, normalize(imgs), np.float32(0.0)).astype(np.float32)[..., None]


def reread_lines(model: "LineModel", images: np.ndarray, widths: np.ndarray, log_probs: np.ndarray,
                 lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A batch's log-probs with its densely read lines read again wider and its sparsely read
    lines read again narrower, as the geometry says: a line whose greedy reading has more
    characters per frame than ``reread_density`` is stretched ``reread_stretch`` times
    (:func:`htr_tf.geometry.stretch_line`), one with fewer than ``reread_sparse`` squeezed
    ``reread_squeeze`` times, and read again; the second reading replaces the first where its
    greedy confidence is higher.

    Narrow writing leaves the CTC too few frames per character: soup P12 read peraire validation
    box crops at 16.61 % CER (15.83 re-reading) and, narrowed to 0.6 of their width, at 38.43 %
    (24.33 re-reading; ``benchmarks/bench_robustness.py --stretches 0.6``).  Wide writing is
    read worse too: P13 read GW 278-279 widened 1.6 times at 15.90 % (7.27 as written), and
    11.11 with lines under 0.25 characters a frame read again at 0.7 of their width.  Returns
    log-probs ``[B, T', C]`` (``T'`` >= ``T``; frames past a line's length mean nothing, as in
    every batch) and lengths ``[B]``.  The served ``recognize_bytes`` does the same in its graph.
    """
    from htr_tf.decode.ctc import GreedyDecoder
    from htr_tf.geometry import stretch_line

    g = model.geometry
    lp, ln = np.asarray(log_probs), np.asarray(lengths)
    if (g.reread_density <= 0 and g.reread_sparse <= 0) or len(ln) == 0:
        return lp, ln
    first = GreedyDecoder().decode(lp, ln, model.charset)
    again: list[tuple[int, float]] = []
    for i, d in enumerate(first):
        frames = max(int(ln[i]), 1)
        if g.reread_density > 0 and len(d.ids) > g.reread_density * frames:
            again.append((i, g.reread_stretch))
        elif g.reread_sparse > 0 and len(d.ids) < g.reread_sparse * frames:
            again.append((i, g.reread_squeeze))
    if not again:
        return lp, ln
    batch, w2 = pad_lines([stretch_line(images[i, :, : int(widths[i])], g, f) for i, f in again], g)
    lp2, ln2 = (np.asarray(a) for a in model.log_probs(batch, w2))
    second = GreedyDecoder().decode(lp2, ln2, model.charset)
    better = [j for j, (i, _) in enumerate(again) if second[j].confidence > first[i].confidence]
    if not better:
        return lp, ln
    T = max(lp.shape[1], lp2.shape[1])
    out = np.zeros((lp.shape[0], T, lp.shape[2]), lp.dtype)
    out[:, : lp.shape[1]] = lp
    ln = ln.copy()
    for j in better:
        i = again[j][0]
        out[i] = 0.0
        out[i, : int(ln2[j])] = lp2[j, : int(ln2[j])]
        ln[i] = ln2[j]
    return out, ln


#: The name of :func:`reread_lines` before it read sparse lines again too.
reread_dense = reread_lines


def batched_log_probs(model: Any, crops: Sequence[np.ndarray], batch_size: int = 16, trim: bool = True
                      ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
    """Per width bucket: (crop indices, log-probs ``[b, T, C]``, lengths ``[b]``, seconds in the model).

    ``trim``: cut the crops' blank margins (and level skewed lines) as the geometry says
    (:func:`htr_tf.geometry.frame_line`); False for crops framed already (the page pipeline's).
    Densely (sparsely) read lines are read again wider (narrower) when the geometry says so
    (:func:`reread_lines`).  Each line is read once: :func:`variant_log_probs` with one view.
    """
    for idx, ((lp, lengths),), seconds in variant_log_probs(model, crops, ("base",), batch_size, trim):
        yield idx, lp, lengths, seconds


def variant_log_probs(model: Any, crops: Sequence[np.ndarray], variants: Sequence[str], batch_size: int = 16,
                      trim: bool = True) -> Iterator[tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]], float]]:
    """Per width bucket: (crop indices, one (log-probs, lengths) per view of :mod:`htr_tf.readings`
    in the order given, seconds in the model).  ``trim`` as in :func:`batched_log_probs`; every
    view is read again as the geometry says, as a single reading is."""
    from htr_tf.geometry import frame_line, resize_line
    from htr_tf.readings import variant_line

    model = line_model(model)
    g = model.geometry
    if trim:
        crops = [frame_line(c, g) for c in crops]
    for idx in width_buckets([g.target_width(*np.asarray(c).shape[:2]) for c in crops], batch_size):
        resized = [resize_line(np.asarray(crops[i]), g, trim=False) for i in idx]
        per_variant = []
        seconds = 0.0
        for name in variants:
            images, widths = pad_lines([variant_line(r, g, name) for r in resized], g)
            t = time.perf_counter()
            lp, lengths = reread_lines(model, images, widths, *model.log_probs(images, widths))
            seconds += time.perf_counter() - t
            per_variant.append((np.asarray(lp), np.asarray(lengths)))
        yield idx, per_variant, seconds


def crop_log_probs(model: Any, crops: Sequence[np.ndarray], batch_size: int = 16, trim: bool = True
                   ) -> list[np.ndarray]:
    """Each crop's valid log-probabilities ``[T_i, C]``, in the order given (for decoding the
    same outputs many times, as ``htr lm tune`` does)."""
    out: list[Any] = [None] * len(crops)
    for idx, lp, lengths, _ in batched_log_probs(model, crops, batch_size, trim):
        for j, i in enumerate(idx):
            out[i] = lp[j, : int(lengths[j])]
    return out


def recognize_crops(model: Any, crops: Sequence[np.ndarray], decoder: "str | Decoder" = "greedy",
                    batch_size: int = 16, decoder_options: dict[str, Any] | None = None,
                    timings: dict[str, float] | None = None, trim: bool = True,
                    variants: "str | Sequence[str] | None" = None) -> list["DecodedLine"]:
    """Recognise 2-D uint8 gray line crops, in the order given.

    ``model`` is a :class:`LineModel` (or a Keras recogniser, :func:`line_model`).  A decoder
    name is built with the model's tuned settings, ``decoder_options`` overriding them, and
    closed at the end; a decoder object is used as it is.  ``trim``: as in
    :func:`batched_log_probs`.  ``timings`` (when given) gets ``recognize`` (seconds in the model)
    and ``decode`` (batching and decoding) added.  ``variants``: read each line in these views
    too and keep the text they agree on most (:mod:`htr_tf.readings`; e.g. ``"default"``);
    ``"none"`` reads each line once, None as the model's ``decoding`` section says.

    An LM decoder whose LM has a language (its ``language``, with ``language_gate`` on) reads
    only the lines whose greedy reading is not in another language (:mod:`htr_tf.decode.language`):
    the others keep the greedy reading (chosen among the views as greedy readings are).
    """
    from htr_tf.decode import build_decoder
    from htr_tf.decode.ctc import GreedyDecoder
    from htr_tf.decode.language import guess_language
    from htr_tf.readings import choose_reading, resolve_variants

    model = line_model(model)
    views = resolve_variants(variants, getattr(model, "decoding", None))
    dec = build_decoder(decoder, getattr(model, "decoding", None), decoder_options)
    t0 = time.perf_counter()
    in_model = 0.0
    language = getattr(dec, "language", None) if getattr(dec, "language_gate", False) else None
    out: list[Any] = [None] * len(crops)

    def choose(readings: list[list[Any]], per_variant: list[tuple[np.ndarray, np.ndarray]], j: int,
               prior: bool) -> Any:   # one reading: choose_reading returns it as it is
        return choose_reading([r[j] for r in readings], [lp[j, : int(n[j])] for lp, n in per_variant],
                              model.charset, text_prior=prior)

    try:
        for idx, per_variant, seconds in variant_log_probs(model, crops, views or ("base",), batch_size, trim):
            in_model += seconds
            rows = list(range(len(idx)))
            if language is not None:
                greedy = [GreedyDecoder().decode(lp, lengths, model.charset) for lp, lengths in per_variant]
                for j in rows:
                    out[idx[j]] = choose(greedy, per_variant, j, False)
                rows = [j for j in rows if guess_language(out[idx[j]].text) in (None, language)]
            if rows:
                sub = (per_variant if len(rows) == len(idx)
                       else [(lp[rows], lengths[rows]) for lp, lengths in per_variant])
                readings = [dec.decode(lp, lengths, model.charset) for lp, lengths in sub]
                for k, j in enumerate(rows):
                    out[idx[j]] = choose(readings, sub, k, getattr(dec, "scores_texts", False))
    finally:
        if isinstance(decoder, str):
            getattr(dec, "close", lambda: None)()
    if timings is not None:
        timings["recognize"] = timings.get("recognize", 0.0) + in_model
        timings["decode"] = timings.get("decode", 0.0) + (time.perf_counter() - t0 - in_model)
    return out


class KerasLineModel:
    """A loaded Keras :class:`~htr_tf.models.recognizer.Recognizer` as a :class:`LineModel`
    (uint8 paper-padded batches in, through :func:`model_input`); ``jit``: run it compiled by
    XLA (:meth:`~htr_tf.models.recognizer.Recognizer.log_probs`)."""

    def __init__(self, recognizer: Any, jit: bool = False) -> None:
        self.recognizer = recognizer
        self.jit = bool(jit)
        self.charset = recognizer.charset
        self.geometry = recognizer.geometry
        self.width_downsample = recognizer.config.width_downsample()
        self.decoding = dict(getattr(recognizer, "decoding", None) or {})

    def log_probs(self, images: np.ndarray, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.recognizer.log_probs(model_input(images, widths), widths, jit=self.jit)


def line_model(model: Any) -> LineModel:
    """``model`` as a :class:`LineModel`: a loaded Keras recogniser is wrapped
    (:class:`KerasLineModel`); a backend is returned as it is."""
    from htr_tf.models.recognizer import Recognizer

    if isinstance(model, Recognizer):
        return KerasLineModel(model)
    for attr in ("charset", "geometry", "log_probs"):
        if not hasattr(model, attr):
            raise TypeError(f"{type(model).__name__} is not a line model (it has no {attr!r})")
    return model
