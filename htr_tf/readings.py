"""Several readings of one line, one answer: test-time variants rescored by CTC likelihood.

A line read once is read by one view of its ink.  Read it a few more times, smaller, narrower,
wider and with thinner strokes (:data:`VARIANTS`, all applied to the line as the recogniser sees
it, after :func:`htr_tf.geometry.resize_line`), and each reading proposes a text.  The text
kept is the one the readings agree on most: the candidate with the largest sum, over every
variant, of its CTC log-likelihood (all alignments, :func:`ctc_log_likelihood`).  A text that
only one view proposes must still be likely under the others, so one variant's mistake rarely
wins.  Characters' frames and confidences come from the first variant's reading (the line as
written), forced-aligned to the text kept, so boxes on the page stay where they were.

Chosen on the validation splits with soup P17, greedy CER % (one reading -> ``default``, the
five views below): copiste 10.96 -> 9.82, peraire 15.10 -> 14.41, GW 278-279 6.40 -> 6.36,
synthetic v2 7.30 -> 6.59.  Picking the reading with the highest confidence instead gained less
and read GW worse (copiste 10.53, peraire 14.75, GW 7.23 with eight views), and averaging
same-width views' probabilities frame by frame gained almost nothing.  Each view is one more
pass of the network: five views read about five times slower (6 against 34 lines/s on copiste
validation, 2 cores).  A bundle names the views it is read in (:func:`save_bundle_variants`,
htr.json ``decoding.variants``), so every Python backend (Keras, LiteRT, the gRPC client) reads
alike; ``--variants none`` reads each line once.  The served graph's ``recognize_bytes`` reads
each line once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from htr_tf.errors import DataError, ModelError

if TYPE_CHECKING:
    from htr_tf.charset import Charset
    from htr_tf.decode.ctc import DecodedLine
    from htr_tf.geometry import LineGeometry

__all__ = ["VARIANTS", "DEFAULT_VARIANTS", "VARIANTS_KEY", "parse_variants", "bundle_variants",
           "resolve_variants", "save_bundle_variants", "variant_line", "ctc_log_likelihood", "choose_reading"]

#: Writing shrunk to this share of the line height (both directions), paper above and below.
SMALL_SCALE = 1 / 1.24
#: Horizontal factors of the ``narrow`` and ``wide`` views.
NARROW, WIDE = 0.85, 1.2


def _small(line: np.ndarray, g: "LineGeometry") -> np.ndarray:
    import cv2

    h, w = line.shape
    nh = max(1, int(round(h * SMALL_SCALE)))
    nw = max(1, int(round(w * SMALL_SCALE)))
    small = cv2.resize(line, (nw, nh), interpolation=cv2.INTER_AREA)
    top = (h - nh) // 2
    out = np.full((h, max(nw, g.min_width)), 255, np.uint8)
    out[top: top + nh, :nw] = small
    return out


def _stretch(factor: float) -> Callable[[np.ndarray, "LineGeometry"], np.ndarray]:
    def view(line: np.ndarray, g: "LineGeometry") -> np.ndarray:
        from htr_tf.geometry import stretch_line

        return stretch_line(line, g, factor)
    return view


def _thin(line: np.ndarray, g: "LineGeometry") -> np.ndarray:
    import cv2

    return cv2.dilate(line, np.ones((2, 1), np.uint8))  # paper grows: strokes lose a pixel row


#: Name -> view of a resized uint8 line (``geometry.height`` tall, paper 255).
VARIANTS: dict[str, Callable[[np.ndarray, "LineGeometry"], np.ndarray]] = {
    "base": lambda line, g: line,
    "small": _small,
    "narrow": _stretch(NARROW),
    "wide": _stretch(WIDE),
    "thin": _thin,
}
#: What ``--variants default`` reads.
DEFAULT_VARIANTS: tuple[str, ...] = ("base", "small", "narrow", "wide", "thin")


def parse_variants(spec: "str | Sequence[str] | None") -> tuple[str, ...]:
    """``"base,small"``, ``"default"``, ``"none"``/``""``/None (one reading) or a sequence of
    names -> a tuple of known variant names starting with ``base``."""
    if spec is None:
        return ()
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if names in ([], ["none"]):
        return ()
    if names == ["default"]:
        return DEFAULT_VARIANTS
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise DataError(f"unknown reading variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    names = ["base"] + [n for n in dict.fromkeys(names) if n != "base"]
    return tuple(names) if len(names) > 1 else ()


#: The entry of a bundle's ``decoding`` section (htr.json) that names the views it is read in
#: when nobody says otherwise: ``{"options": {"views": [...]}, "tuned": {...}}``, beside the
#: decoders' tuned weights, so every Python backend (Keras, LiteRT, gRPC) reads alike.
VARIANTS_KEY = "variants"


def bundle_variants(decoding: "Mapping[str, Any] | None") -> tuple[str, ...]:
    """The views a model's ``decoding`` section names (:data:`VARIANTS_KEY`); () when none."""
    entry = (decoding or {}).get(VARIANTS_KEY)
    if entry is None:
        return ()
    views = entry.get("options", {}).get("views") if isinstance(entry, Mapping) else None
    if not isinstance(views, (list, tuple)):
        raise ModelError(f"the model's {VARIANTS_KEY!r} decoding entry has no options.views list: {entry!r}")
    try:
        return parse_variants(list(views))
    except DataError as e:
        raise ModelError(f"the model's {VARIANTS_KEY!r} decoding entry: {e}") from None


def resolve_variants(spec: "str | Sequence[str] | None", decoding: "Mapping[str, Any] | None") -> tuple[str, ...]:
    """The views to read in: ``spec`` when given (``"none"`` for one reading), else the model's own
    (:func:`bundle_variants`)."""
    return bundle_variants(decoding) if spec is None else parse_variants(spec)


def save_bundle_variants(bundle: "str | Any", views: "str | Sequence[str]", tuned: dict | None = None) -> tuple[str, ...]:
    """Make ``views`` the views a recogniser bundle directory is read in by default (its htr.json
    ``decoding.variants``, written atomically; ``"none"`` records one reading); ``tuned`` says on
    what they were chosen.  Returns the views recorded."""
    from htr_tf.models.recognizer import Recognizer

    names = parse_variants(views)
    Recognizer.save_decoder_settings(bundle, VARIANTS_KEY, {"views": list(names)}, tuned)
    return names


def variant_line(resized: np.ndarray, geometry: "LineGeometry", name: str) -> np.ndarray:
    """One view of a resized 2-D uint8 line (see :data:`VARIANTS`)."""
    if name not in VARIANTS:
        raise DataError(f"unknown reading variant {name!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[name](np.asarray(resized, np.uint8), geometry)


def ctc_log_likelihood(log_probs: np.ndarray, lengths: Sequence[int] | np.ndarray,
                       labels: Sequence[Sequence[int]]) -> np.ndarray:
    """log p(labels[b] | log_probs[b]) under CTC (the sum over every alignment; ids 1-based,
    blank 0), vectorised over the batch ``[B, T, C]``; ``-inf`` for a labelling that cannot fit
    its frames."""
    lp = np.asarray(log_probs, np.float64)
    B, T, _ = lp.shape
    ln = np.minimum(np.asarray(lengths, np.int64).reshape(-1), T)
    L = np.array([len(x) for x in labels], np.int64)
    S = 2 * (int(L.max()) if B else 0) + 1
    ext = np.zeros((B, S), np.int64)
    for b, x in enumerate(labels):
        ext[b, 1: 2 * len(x): 2] = x
    skip = np.zeros((B, S), bool)
    skip[:, 3::2] = ext[:, 3::2] != ext[:, 1:-2:2]
    alpha = np.full((B, S), -np.inf)
    if T:
        alpha[:, :2] = np.take_along_axis(lp[:, 0], ext[:, :2], 1)
    with np.errstate(invalid="ignore"):
        for t in range(1, int(ln.max()) if B else 0):
            prev1 = np.full((B, S), -np.inf)
            prev2 = np.full((B, S), -np.inf)
            prev1[:, 1:] = alpha[:, :-1]
            prev2[:, 2:] = alpha[:, :-2]
            prev2[~skip] = -np.inf
            new = np.logaddexp(np.logaddexp(alpha, prev1), prev2) + np.take_along_axis(lp[:, t], ext, 1)
            alpha = np.where((t < ln)[:, None], new, alpha)
    rows = np.arange(B)
    end = 2 * L
    out = np.logaddexp(alpha[rows, end], np.where(L > 0, alpha[rows, np.maximum(end - 1, 0)], -np.inf))
    out[ln == 0] = np.where(L[ln == 0] == 0, 0.0, -np.inf)
    return out


def choose_reading(readings: Sequence["DecodedLine"], log_probs: Sequence[np.ndarray],
                   charset: "Charset") -> "DecodedLine":
    """The reading whose text has the largest summed CTC log-likelihood under every variant's
    log-probs (``[T_v, C]`` each, in the order of ``readings``; the first is the line as
    written).  A text other than the first reading's is forced-aligned to the first
    variant's log-probs, so its frames and confidences are in that reading's frames."""
    from htr_tf.decode.ctc import DecodedLine, forced_align_batch

    texts = list(dict.fromkeys(r.text for r in readings))
    if len(texts) == 1:
        return readings[0]
    # each text's own ids, one per character: not charset.encode, which would normalise spaces away
    labels = [_label(next(r for r in readings if r.text == t), charset) for t in texts]
    total = np.zeros(len(texts))
    for lp in log_probs:
        lp = np.asarray(lp)
        total += ctc_log_likelihood(np.broadcast_to(lp, (len(texts),) + lp.shape), [lp.shape[0]] * len(texts), labels)
    best = texts[int(np.argmax(total))]
    first = readings[0]
    if best == first.text:
        return first
    base = np.asarray(log_probs[0])
    (spans, score), = forced_align_batch(base[None], [base.shape[0]], [labels[texts.index(best)]])
    donor = next(r for r in readings if r.text == best)
    if not spans or len(labels[texts.index(best)]) != len(best):
        return donor  # it cannot fit the first reading's frames (or has no ids): the donor's own
    probs = np.exp(base)
    ids = labels[texts.index(best)]
    confs = tuple(float(probs[s:e, i].max()) for (s, e), i in zip(spans, ids))
    return DecodedLine(best, tuple(ids), float(np.mean(confs)) if confs else first.confidence, confs,
                       tuple((int(s), int(e)) for s, e in spans), float(score), first.num_frames)


def _label(reading: "DecodedLine", charset: "Charset") -> list[int]:
    """A reading's character ids, one per character of its text."""
    if len(reading.ids) == len(reading.text):
        return [int(i) for i in reading.ids]
    index = {c: i + 1 for i, c in enumerate(charset.chars)}
    return [index[c] for c in reading.text if c in index]

