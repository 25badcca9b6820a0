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
the same views in graph (:func:`tf_variant_lines`, :func:`tf_choose_readings`: TF twins that
keep the numpy path's text and confidence).
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
           "resolve_variants", "save_bundle_variants", "variant_line", "ctc_log_likelihood", "choose_reading",
           "tf_variant_lines", "tf_choose_readings"]

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
                   charset: "Charset", text_prior: bool = False) -> "DecodedLine":
    """The reading whose text has the largest summed CTC log-likelihood under every variant's
    log-probs (``[T_v, C]`` each, in the order of ``readings``; the first is the line as
    written).  A text other than the first reading's is forced-aligned to the first
    variant's log-probs, so its frames and confidences are in that reading's frames.

    ``text_prior``: the readings come from a decoder whose score adds a prior over texts to
    the recogniser's log-likelihood (an LM decoder's ``lm_weight * lm + word_score * words``,
    :attr:`htr_tf.decode.beam_lm.WordLMDecoder.scores_texts`).  Each view then counts that
    prior too, as its decoder did: a text scores its summed log-likelihood plus the number of
    views times its prior, the prior being what its decoder's score adds to the text's own
    view's log-likelihood.  Without it, the choice undoes what the LM chose (measured with soup
    P21h, beam+lm on synth-v2-lmheld train, 400 lines: CER 6.46 read once, 6.44 in five views
    chosen by likelihood alone, 6.08 with the prior; WER 14.53, 14.89, 13.58)."""
    from htr_tf.decode.ctc import DecodedLine, forced_align_batch

    texts = list(dict.fromkeys(r.text for r in readings))
    if len(texts) == 1:
        return readings[0]
    # each text's own ids, one per character: not charset.encode, which would normalise spaces away
    labels = [_label(next(r for r in readings if r.text == t), charset) for t in texts]
    per_view = np.stack([
        ctc_log_likelihood(np.broadcast_to(lp, (len(texts),) + lp.shape), [lp.shape[0]] * len(texts), labels)
        for lp in map(np.asarray, log_probs)], axis=1)                     # [texts, views]
    total = per_view.sum(axis=1)
    if text_prior:
        prior = np.array([np.mean([r.score - per_view[k, v] for v, r in enumerate(readings) if r.text == t])
                          for k, t in enumerate(texts)])
        total = total + len(log_probs) * prior
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



# -- TensorFlow twins (the served graph's ``recognize_bytes``) ----------------------------------
def tf_variant_lines(images, widths, geometry: "LineGeometry", name: str):
    """TF twin of :func:`variant_line` for a batch: uint8 ``[B, H, W]`` paper-padded lines and
    int32 widths ``[B]`` -> (uint8 ``[B, H, W']`` paper-padded, int32 widths ``[B]``)."""
    import tensorflow as tf

    from htr_tf.geometry import tf_stretch_lines

    if name not in VARIANTS:
        raise DataError(f"unknown reading variant {name!r}; known: {', '.join(VARIANTS)}")
    widths = tf.cast(widths, tf.int32)
    if name == "base":
        return images, widths
    if name in ("narrow", "wide"):
        factor = NARROW if name == "narrow" else WIDE
        return tf_stretch_lines(images, widths, geometry, tf.fill(tf.shape(widths), tf.constant(factor, tf.float64)))
    if name == "thin":   # cv2.dilate with a 2x1 kernel: each row takes the lighter of itself and the row above
        return tf.maximum(images, tf.concat([images[:, :1], images[:, :-1]], axis=1)), widths
    H = geometry.height
    nh = max(1, int(round(H * SMALL_SCALE)))
    top = (H - nh) // 2
    nw = tf.maximum(tf.cast(tf.round(tf.cast(widths, tf.float64) * SMALL_SCALE), tf.int32), 1)
    out_w = tf.maximum(nw, geometry.min_width)
    W = tf.maximum(tf.reduce_max(tf.concat([out_w, [1]], 0)), 1)

    def one(args):
        img, w, n = args
        x = tf.image.resize(tf.cast(img[:, :w, None], tf.float32), tf.stack([nh, n]), method="area")
        x = tf.cast(tf.clip_by_value(tf.round(x[..., 0]), 0, 255), tf.uint8)
        return tf.pad(x, [[top, H - nh - top], [0, W - n]], constant_values=255)

    out = tf.map_fn(one, (images, widths, nw), fn_output_signature=tf.TensorSpec([H, None], tf.uint8))
    return out, out_w


def _tf_logaddexp(a, b):
    import tensorflow as tf

    m = tf.maximum(a, b)
    return tf.where(tf.math.is_inf(m) & (m < 0), m, m + tf.math.log1p(tf.exp(-tf.abs(a - b))))


def _tf_ctc_lattice(log_probs, lengths, labels, label_lengths, viterbi: bool = False):
    """CTC over the extended labelling (blank, c1, blank, ..., blank) in float64, as
    :func:`ctc_log_likelihood` (``viterbi``: the best path, as
    :func:`htr_tf.decode.ctc.forced_align_batch`).  Returns (score ``[N]``, with ``viterbi`` the
    back-pointers (a TensorArray of ``T`` int8 ``[N, S]``: 0 stay, 1 from s-1, 2 from s-2) and
    each row's end state, else None, extended labels ``[N, S]``).  Every line has a frame."""
    import tensorflow as tf

    lp = tf.cast(log_probs, tf.float64)
    N, T = tf.shape(lp)[0], tf.shape(lp)[1]
    ln = tf.minimum(tf.cast(lengths, tf.int32), T)
    labels = tf.cast(labels, tf.int32)
    L = tf.cast(label_lengths, tf.int32)
    labels = tf.where(tf.sequence_mask(L, tf.shape(labels)[1]), labels, 0)
    ext = tf.reshape(tf.stack([tf.zeros_like(labels), labels], axis=2), [N, -1])
    ext = tf.concat([ext, tf.zeros([N, 1], tf.int32)], axis=1)
    S = tf.shape(ext)[1]
    # a character state may skip the blank before it unless it repeats the previous character
    skip = tf.concat([tf.zeros([N, tf.minimum(S, 2)], tf.bool), ext[:, 2:] != ext[:, :-2]], axis=1)
    neg = tf.constant(-np.inf, tf.float64)
    score = tf.where(tf.range(S)[None, :] < 2, tf.gather(lp[:, 0], ext, batch_dims=1), neg)  # T >= 1
    # back-pointers only for the Viterbi path (an empty array otherwise)
    back = tf.TensorArray(tf.int8, size=T if viterbi else 0, clear_after_read=False)
    if viterbi:
        back = back.write(0, tf.zeros([N, S], tf.int8))
    stop = tf.reduce_max(tf.concat([ln, [0]], 0))

    def step(t, score, back):
        prev1 = tf.concat([tf.fill([N, 1], neg), score[:, :-1]], axis=1)
        prev2 = tf.concat([tf.fill([N, 2], neg), score[:, :-2]], axis=1)[:, :S]
        prev2 = tf.where(skip, prev2, neg)
        emit = tf.gather(lp[:, t], ext, batch_dims=1)
        active = (t < ln)[:, None]
        if viterbi:
            from1 = prev1 > score
            best = tf.where(from1, prev1, score)
            from2 = prev2 > best
            ptr = tf.where(from2, tf.constant(2, tf.int8), tf.cast(from1, tf.int8))
            back = back.write(t, tf.where(active, ptr, tf.constant(0, tf.int8)))
            new = tf.where(from2, prev2, best) + emit
        else:
            new = _tf_logaddexp(_tf_logaddexp(score, prev1), prev2) + emit
        return t + 1, tf.where(active, new, score), back

    _, score, back = tf.while_loop(lambda t, *_: t < stop, step, (tf.constant(1), score, back),
                                   shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, None]), None))
    end = 2 * L
    end_score = tf.gather(score, end, batch_dims=1)
    alt = tf.where(L > 0, tf.gather(score, tf.maximum(end - 1, 0), batch_dims=1), neg)
    final = tf.maximum(alt, end_score) if viterbi else _tf_logaddexp(alt, end_score)
    final = tf.where(ln == 0, tf.where(L == 0, tf.constant(0.0, tf.float64), neg), final)
    return final, (back, tf.where(alt > end_score, end - 1, end)) if viterbi else None, ext


def tf_choose_readings(log_probs: Sequence[Any], lengths: Sequence[Any], chars: str):
    """TF twin of :func:`choose_reading` over a batch of greedy readings: one ``[B, T_v, C]``
    log-probs and ``[B]`` lengths per view (the first: the line as written) -> (text ``[B]``
    string, confidence ``[B]`` float32), as the numpy path reads them with the greedy decoder."""
    import tensorflow as tf

    from htr_tf.decode.ctc import tf_greedy_decode

    V = len(log_probs)
    greedy = [tf_greedy_decode(lp, ln, chars, with_ids=True) for lp, ln in zip(log_probs, lengths)]
    if V == 1:
        return greedy[0][:2]
    B = tf.shape(log_probs[0])[0]
    ids = [tf.cast(g[2], tf.int32) for g in greedy]
    counts = [tf.cast(i.row_lengths(), tf.int32) for i in ids]
    Lmax = tf.maximum(tf.reduce_max(tf.concat(counts, 0)), 1)
    dense = [i.to_tensor(0, shape=tf.stack([B, Lmax])) for i in ids]
    T = tf.reduce_max(tf.stack([tf.shape(lp)[1] for lp in log_probs]))
    padded = [tf.pad(tf.cast(lp, tf.float64), [[0, 0], [0, T - tf.shape(lp)[1]], [0, 0]]) for lp in log_probs]
    # every candidate (one per view) under every view's log-probs: V*V*B labellings at once
    ll, _, _ = _tf_ctc_lattice(tf.concat([padded[v] for _ in range(V) for v in range(V)], 0),
                               tf.concat([lengths[v] for _ in range(V) for v in range(V)], 0),
                               tf.concat([dense[c] for c in range(V) for _ in range(V)], 0),
                               tf.concat([counts[c] for c in range(V) for _ in range(V)], 0))
    total = tf.reduce_sum(tf.reshape(ll, [V, V, B]), axis=1)                    # [candidate, B]
    is_best = total >= tf.reduce_max(total, axis=0, keepdims=True)
    pick = tf.reduce_min(tf.where(is_best, tf.range(V)[:, None], V), axis=0)    # the first best, as numpy's argmax
    rows = tf.stack([pick, tf.range(B)], axis=1)
    texts = tf.gather_nd(tf.stack([g[0] for g in greedy]), rows)
    donor_conf = tf.gather_nd(tf.stack([g[1] for g in greedy]), rows)
    chosen = tf.gather_nd(tf.stack(dense), rows)
    chosen_len = tf.gather_nd(tf.stack(counts), rows)
    # a text other than the first reading's: its confidence from the first view, forced-aligned
    score, (back, state), ext = _tf_ctc_lattice(padded[0], lengths[0], chosen, chosen_len, viterbi=True)
    path = tf.TensorArray(tf.int32, size=T)

    def back_step(t, state, path):
        path = path.write(t, state)
        return t - 1, state - tf.cast(tf.gather(back.read(t), state, batch_dims=1), tf.int32), path

    _, _, path = tf.while_loop(lambda t, *_: t >= 0, back_step, (T - 1, state, path))
    path = tf.transpose(path.stack())                                             # [B, T] states
    on_char = (path % 2 == 1) & tf.sequence_mask(lengths[0], T)
    frame_prob = tf.exp(tf.gather(tf.cast(padded[0], tf.float32), tf.gather(ext, path, batch_dims=1), batch_dims=2))
    S = tf.shape(ext)[1]
    segment = tf.where(on_char, tf.range(B)[:, None] * S + path // 2, B * S)      # (line, character)
    char_max = tf.math.unsorted_segment_max(tf.reshape(frame_prob, [-1]), tf.reshape(segment, [-1]), B * S + 1)
    char_max = tf.reshape(char_max[:-1], [B, S])
    real_char = tf.range(S)[None, :] < chosen_len[:, None]
    aligned = tf.math.divide_no_nan(tf.reduce_sum(tf.where(real_char, char_max, 0.0), axis=1),
                                    tf.cast(chosen_len, tf.float32))
    fits = tf.math.is_finite(score) & (chosen_len > 0)
    confidence = tf.where(texts == greedy[0][0], greedy[0][1], tf.where(fits, aligned, donor_conf))
    return texts, confidence
