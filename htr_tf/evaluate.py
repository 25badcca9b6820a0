"""Evaluating a recogniser on a record set's line images: pooled CER/WER and a per-line report.

Rates are pooled (total edits / total reference length, :func:`htr_tf.metrics.score_lines`).
References are normalised with the model's charset (:meth:`Charset.normalize`: NFC,
typographic variants folded, runs of spaces collapsed) since that is what the model was
trained to write; hypotheses are scored as decoded.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from htr_tf.errors import DataError
from htr_tf.metrics import score_lines

if TYPE_CHECKING:
    from htr_tf.decode.ctc import Decoder

__all__ = ["REPORT_FORMAT_VERSION", "score_lines", "evaluate_recognizer"]

REPORT_FORMAT_VERSION = 1


def evaluate_recognizer(recognizer: Any, records: "str | os.PathLike | Any", split: str = "test",
                        decoder: "str | Decoder" = "greedy", batch_size: int = 32,
                        limit: int | None = None, decoder_options: dict[str, Any] | None = None,
                        progress: Callable[[int, int], None] | None = None,
                        variants: "str | Sequence[str] | None" = None) -> dict[str, Any]:
    """Recognise a record set's ``split`` and score it; returns the report as a dict.

    ``recognizer`` is a Keras recogniser or any pipeline backend (a
    :class:`~htr_tf.recognize.LineModel`): lines are read by :func:`htr_tf.recognize.recognize_crops`,
    the pages' path.  Images are decoded lazily, one width bucket at a time;
    ``limit`` takes the first ``limit`` lines of the split.  ``progress(done, total)`` is
    called after each batch; ``variants``: read each line in several views
    (:func:`htr_tf.recognize.recognize_crops`; None: as the model says).  The report holds pooled ``cer``/``wer`` (fractions), edit
    counts, timing, and ``lines``: one record per line (id, ref, hyp, cer, wer, confidence,
    edit counts), in the record set's order.
    """
    from htr_tf.data.records import RecordSet
    from htr_tf.decode import build_decoder
    from htr_tf.fileio import decode_image
    from htr_tf.readings import resolve_variants
    from htr_tf.recognize import line_model, recognize_crops, width_buckets

    model = line_model(recognizer)
    rs = records if isinstance(records, RecordSet) else RecordSet(records)
    if limit is not None and limit < 0:
        raise DataError(f"limit must be >= 0, got {limit}")
    dec = build_decoder(decoder, getattr(model, "decoding", None), decoder_options)
    g, cs = model.geometry, model.charset
    t0 = time.perf_counter()
    ids: list[str] = []
    refs: list[str] = []
    pngs: list[bytes] = []
    sizes: list[int] = []
    for ex in rs.iter_lines(split):
        if limit is not None and len(ids) >= limit:
            break
        ids.append(ex["id"])
        refs.append(cs.normalize(ex["text"]))
        pngs.append(ex["image"])
        sizes.append(g.target_width(int(ex["height"]), int(ex["width"])))
    decoded: list[Any] = [None] * len(ids)
    done = 0
    for idx in width_buckets(sizes, batch_size):
        crops = [decode_image(pngs[i], f"{rs.path}:{split}:{ids[i]}") for i in idx]
        for i, line in zip(idx, recognize_crops(model, crops, dec, batch_size, variants=variants)):
            decoded[i] = line
        done += len(idx)
        if progress is not None:
            progress(done, len(ids))
    seconds = time.perf_counter() - t0
    hyps = [d.text for d in decoded]
    scores = score_lines(refs, hyps)
    per_line = [{"id": i, "ref": r, "hyp": h, "cer": s["cer"], "wer": s["wer"],
                 "confidence": d.confidence, "char_edits": s["char_edits"], "ref_chars": s["ref_chars"],
                 "word_edits": s["word_edits"], "ref_words": s["ref_words"]}
                for i, r, h, d, s in zip(ids, refs, hyps, decoded, scores.pop("lines"))]
    return {
        "kind": "recognizer_evaluation",
        "format_version": REPORT_FORMAT_VERSION,
        "records": str(rs.path),
        "split": split,
        "decoder": {"name": getattr(dec, "name", type(dec).__name__), **dec.options()},
        "variants": list(resolve_variants(variants, getattr(model, "decoding", None))),
        "num_lines": len(ids),
        **scores,
        "mean_confidence": float(np.mean([d.confidence for d in decoded])) if decoded else None,
        "seconds": round(seconds, 3),
        "lines_per_second": round(len(ids) / seconds, 2) if seconds > 0 and ids else None,
        "lines": per_line,
    }
