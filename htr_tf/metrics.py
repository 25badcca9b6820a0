"""Pooled character and word error rates (jiwer): the one definition training and evaluation use.

Rates are **pooled**: total edits over all lines divided by the total reference length
(what IAM papers and sclite report), never the mean of per-line rates, which gives short
lines too much weight.  Edits come from jiwer's alignments:

* CER counts every character, spaces included, with no stripping (a stray leading space
  is an error);
* WER splits on whitespace (jiwer's default word transform); an empty reference line's
  hypothesis words are all insertions.

>>> s = score_lines(["a cat", "hello"], ["a bat", "hello"])
>>> s["cer"], s["char_edits"], s["ref_chars"], s["wer"]
(0.1, 1, 10, 0.3333333333333333)
>>> score_lines([], [])["cer"] is None
True
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["score_lines"]


def _edit_counts(alignment) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of one jiwer alignment."""
    s = d = i = 0
    for chunk in alignment:
        if chunk.type == "substitute":
            s += chunk.ref_end_idx - chunk.ref_start_idx
        elif chunk.type == "delete":
            d += chunk.ref_end_idx - chunk.ref_start_idx
        elif chunk.type == "insert":
            i += chunk.hyp_end_idx - chunk.hyp_start_idx
    return s, d, i


def _rate(edits: int, n: int) -> float:
    """Edits per reference unit; an empty reference counts as one unit."""
    return edits / max(n, 1)


def score_lines(refs: Sequence[str], hyps: Sequence[str]) -> dict[str, Any]:
    """Pooled CER/WER plus per-line counts (``lines``: one dict per pair, in order)."""
    import jiwer

    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    refs, hyps = [str(r) for r in refs], [str(h) for h in hyps]
    lines: list[dict[str, Any]] = [{} for _ in refs]
    totals: dict[str, int] = {}
    if refs:
        chars = jiwer.ReduceToListOfListOfChars()
        c_out = jiwer.process_characters(refs, hyps, reference_transform=chars, hypothesis_transform=chars)
        w_out = jiwer.process_words(refs, hyps)
        for unit, out in (("char", c_out), ("word", w_out)):
            tot_s = tot_d = tot_i = tot_n = 0
            for k, (ref_units, alignment) in enumerate(zip(out.references, out.alignments)):
                s, d, i = _edit_counts(alignment)
                n = len(ref_units)
                lines[k][f"{unit}_edits"], lines[k][f"ref_{unit}s"] = s + d + i, n
                tot_s, tot_d, tot_i, tot_n = tot_s + s, tot_d + d, tot_i + i, tot_n + n
            totals.update({f"{unit}_edits": tot_s + tot_d + tot_i, f"ref_{unit}s": tot_n,
                           f"{unit}_substitutions": tot_s, f"{unit}_deletions": tot_d,
                           f"{unit}_insertions": tot_i})
    else:
        for unit in ("char", "word"):
            totals.update({f"{unit}_edits": 0, f"ref_{unit}s": 0, f"{unit}_substitutions": 0,
                           f"{unit}_deletions": 0, f"{unit}_insertions": 0})
    for line in lines:
        line["cer"] = _rate(line["char_edits"], line["ref_chars"])
        line["wer"] = _rate(line["word_edits"], line["ref_words"])
    return {
        "cer": _rate(totals["char_edits"], totals["ref_chars"]) if refs else None,
        "wer": _rate(totals["word_edits"], totals["ref_words"]) if refs else None,
        **totals,
        "mean_line_cer": float(np.mean([x["cer"] for x in lines])) if lines else None,
        "lines": lines,
    }
