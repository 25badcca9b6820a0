"""Full-page evaluation: the pipeline on whole pages next to the recogniser on ground-truth lines.

For every page of a form record set (or loose page images with ground-truth text) this
runs :class:`~htr_tf.pipeline.Pipeline` end to end (page level) and the same recogniser on
the page's ground-truth line boxes (line level), so the two sit side by side and the gap
between them is what layout (area and line detection, reading order) costs.

Definitions (the same for every number this module reports):

* **Pooled rates.**  CER and WER are total edits over total reference length
  (:func:`htr_tf.evaluate.score_lines`, jiwer alignments), never a mean of per-page or
  per-line rates; the mean of per-page CERs is reported too, labelled as such, because it
  differs (short pages weigh as much as long ones).
* **Line level.**  One reference per ground-truth line (its text, normalised with the
  model's charset); the hypothesis is the recogniser's text for the crop at that line's
  ground-truth box (with the pipeline's line padding).  Spaces count in CER.
* **Page level.**  A page's reference is its ground-truth lines in reading order joined by
  one space; its hypothesis is the pipeline's lines joined the same way; whitespace runs
  are collapsed (:func:`page_text`).  So a line break is never an error, but a line the
  detector missed, split, merged or put out of order is.
* **Line detection.**  Precision and recall of the detector's boxes against the
  ground-truth line boxes at IoU >= 0.5 (COCO-style greedy matching,
  :class:`htr_tf.layout_eval.LineCounts`), pooled over pages.

Several decoders are compared on the same network outputs: each line's log-probabilities
are computed once (a caching wrapper around the backend) and decoded by every decoder.

>>> page_text(["a  cat", "", "sat "])
'a cat sat'
>>> edit_distance("kitten", "sitting")
3
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import heapq
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from htr_tf.errors import ConfigError, DataError

if TYPE_CHECKING:
    from htr_tf.decode.ctc import Decoder
    from htr_tf.pipeline import Pipeline

__all__ = ["PageSample", "evaluate_pipeline", "page_text", "edit_distance", "char_ops", "confusion_pairs",
           "pages_from_records", "pages_from_files", "sclite_command", "run_sclite", "format_summary", "REPORT_KIND",
           "DEFINITIONS"]

REPORT_KIND = "pipeline_evaluation"
REPORT_FORMAT_VERSION = 1
#: IoU at which a detected line counts as finding a ground-truth line.
IOU_THRESHOLD = 0.5
#: Line crops kept for the report are scaled down to at most this height (pixels).
CROP_HEIGHT = 72

DEFINITIONS = {
    "cer": "character error rate, pooled: total character edits (substitutions + deletions + insertions, "
           "spaces included) / total reference characters",
    "wer": "word error rate, pooled: total word edits / total reference words (words split at whitespace)",
    "line level": "the recogniser on each ground-truth line of the page: its polygon-masked crop where the "
                  "ground truth has line polygons (htr_tf.crop.cut_polygon, as xml-prepare cuts training "
                  "lines), else its box (same crop padding as the pipeline)",
    "per source": "the same pooled rates over the pages of each source (the records' source field)",
    "page level": "the full pipeline (area, line detection, recognition); page texts are the lines in "
                  "reading order joined by one space, whitespace runs collapsed, so line breaks are not errors",
    "mean page cer": "mean of per-page CERs: shown for contrast only, it over-weighs short pages",
    "detection": f"line boxes matched to ground-truth boxes at IoU >= {IOU_THRESHOLD}, pooled over pages",
    "references": "ground-truth texts normalised with the model's charset (NFC, typographic variants, "
                  "single spaces); hypotheses scored as decoded",
}


# -- text helpers -------------------------------------------------------------------------------------
def page_text(lines: Iterable[str]) -> str:
    """A page's text for page-level scoring: lines joined by one space, whitespace runs collapsed."""
    return " ".join(" ".join(lines).split())


def edit_distance(ref: Sequence[Any], hyp: Sequence[Any]) -> int:
    """Levenshtein distance (unit costs) between two sequences; an independent check of jiwer's counts."""
    if len(ref) < len(hyp):
        ref, hyp = hyp, ref
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


#: One aligned position: ("=", r, h) equal, ("s", r, h) substitution, ("d", r, "") deletion,
#: ("i", "", h) insertion.
Op = tuple[str, str, str]


def _ops_from_alignment(ref: Sequence[str], hyp: Sequence[str], alignment: Any) -> list[Op]:
    ops: list[Op] = []
    for c in alignment:
        if c.type == "equal":
            ops += [("=", ref[i], hyp[j]) for i, j in zip(range(c.ref_start_idx, c.ref_end_idx),
                                                          range(c.hyp_start_idx, c.hyp_end_idx))]
        elif c.type == "substitute":
            ops += [("s", ref[i], hyp[j]) for i, j in zip(range(c.ref_start_idx, c.ref_end_idx),
                                                          range(c.hyp_start_idx, c.hyp_end_idx))]
        elif c.type == "delete":
            ops += [("d", ref[i], "") for i in range(c.ref_start_idx, c.ref_end_idx)]
        elif c.type == "insert":
            ops += [("i", "", hyp[j]) for j in range(c.hyp_start_idx, c.hyp_end_idx)]
    return ops


def char_alignments(refs: Sequence[str], hyps: Sequence[str]) -> list[list[Op]]:
    """Character alignments of many pairs (jiwer's, the ones CER is counted from)."""
    import jiwer

    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        return []
    t = jiwer.ReduceToListOfListOfChars()
    out = jiwer.process_characters(list(refs), list(hyps), reference_transform=t, hypothesis_transform=t)
    return [_ops_from_alignment(r, h, a) for r, h, a in zip(out.references, out.hypotheses, out.alignments)]


def char_ops(ref: str, hyp: str) -> list[Op]:
    """The character alignment of one pair (see :data:`Op`)."""
    if ref == hyp:
        return [("=", c, c) for c in ref]
    return char_alignments([ref], [hyp])[0]


def confusion_pairs(alignments: Iterable[Sequence[Op]]) -> Counter:
    """``(ref_char, hyp_char) -> count`` of every edit; ``""`` stands for a missing character."""
    return Counter((r, h) for ops in alignments for kind, r, h in ops if kind != "=")


# -- pages -----------------------------------------------------------------------------------------
@dataclass
class PageSample:
    """A page to evaluate: a gray image and its ground-truth lines (boxes may be unknown)."""

    id: str
    image: np.ndarray
    line_texts: list[str]
    line_boxes: np.ndarray | None = None
    line_ids: list[str] = field(default_factory=list)
    writer: str = ""
    source: str = ""
    #: Per line, its ground-truth polygon (``[K, 2]`` page px), when the records have them.
    line_polygons: list[np.ndarray] | None = None

    def __post_init__(self) -> None:
        if self.line_boxes is not None:
            self.line_boxes = np.asarray(self.line_boxes, np.float32).reshape(-1, 4)
            if len(self.line_boxes) != len(self.line_texts):
                raise DataError(f"page {self.id}: {len(self.line_boxes)} line boxes for "
                                f"{len(self.line_texts)} line texts")
        if not self.line_ids:
            self.line_ids = [f"{self.id}-{k + 1:02d}" for k in range(len(self.line_texts))]


def pages_from_records(records: Any, split: str = "test", limit: int | None = None
                       ) -> tuple[int, Iterator[PageSample]]:
    """(number of pages, lazy pages) of a form record set's ``split``; the first ``limit`` pages."""
    from htr_tf.data.records import RecordSet
    from htr_tf.fileio import decode_image

    rs = records if isinstance(records, RecordSet) else RecordSet(records)
    rs.files("forms", split)  # a clear error for a missing split
    total = rs.count("forms", split)
    if limit is not None:
        total = min(total, limit)

    def gen() -> Iterator[PageSample]:
        n = 0
        for ex in rs.iter_forms(split):
            if limit is not None and n >= limit:
                break
            n += 1
            yield PageSample(ex["id"], decode_image(ex["image"], f"{rs.path}:{split}:{ex['id']}"),
                             list(ex["line_texts"]), np.asarray(ex["line_boxes"], np.float32),
                             list(ex["line_ids"]), ex.get("writer", ""), ex.get("source", ""),
                             _record_polygons(ex))

    return total, gen()


def _record_polygons(ex: dict) -> list[np.ndarray] | None:
    """A form record's line polygons (every line has one), else None."""
    from htr_tf.data.records import split_points

    lens = np.asarray(ex.get("line_polygon_len", ()), np.int64).reshape(-1)
    n = len(ex["line_texts"])
    if n == 0 or len(lens) != n or not (lens >= 3).all():
        return None
    return split_points(ex["line_polygon_xy"], lens)


def _ground_truth_file(image: Path) -> Path:
    for cand in (image.with_suffix(".gt.txt"), image.with_suffix(".txt")):
        if cand.exists():
            return cand
    raise DataError(f"{image}: no ground truth beside it (expected {image.with_suffix('.gt.txt').name} "
                    f"or {image.with_suffix('.txt').name}, one text line per line)")


def pages_from_files(images: Sequence[str | os.PathLike]) -> list[PageSample]:
    """Page images with their ground truth in ``NAME.gt.txt`` (or ``NAME.txt``) beside them.

    Without line boxes only page-level numbers can be computed.
    """
    from htr_tf.fileio import read_image

    out = []
    for name in images:
        p = Path(name)
        gt = _ground_truth_file(p)
        texts = [t for t in gt.read_text(encoding="utf-8").splitlines() if t.strip()]
        out.append(PageSample(p.stem, read_image(p), texts))
    return out


# -- log-probs once, decoders many ------------------------------------------------------------------
def _key(*arrays: np.ndarray) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.data)
    return h.digest()


class _CachedBackend:
    """A backend wrapper that remembers its answers for one page, so every decoder sees the same
    network outputs and the networks run once per page however many decoders there are."""

    def __init__(self, backend: Any) -> None:
        self.inner = backend
        self.name = backend.name
        self.charset = backend.charset
        self.geometry = backend.geometry
        self.width_downsample = backend.width_downsample
        self.lines = getattr(backend, "lines", None)   # its config holds the line-type classifier
        self.decoding = getattr(backend, "decoding", None)   # tuned decoders and the views lines are read in
        self._cache: dict[tuple[str, bytes], Any] = {}

    def clear(self) -> None:
        self._cache.clear()

    def _get(self, kind: str, key: bytes, fn: Callable[[], Any]) -> Any:
        k = (kind, key)
        if k not in self._cache:
            self._cache[k] = fn()
        return self._cache[k]

    def find_area(self, page: np.ndarray) -> tuple[np.ndarray, float]:
        return self._get("area", _key(page), lambda: self.inner.find_area(page))

    def find_lines(self, page: np.ndarray, region: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        r = np.zeros(0, np.float32) if region is None else np.asarray(region, np.float32)
        return self._get("lines", _key(page, r), lambda: self.inner.find_lines(page, region))

    def log_probs(self, images: np.ndarray, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lp, ln = self._get("lp", _key(images, np.asarray(widths)), lambda: self.inner.log_probs(images, widths))
        return lp, ln


def _decoders(pipeline: "Pipeline", decoders: Sequence["str | Decoder"] | None) -> list[tuple[str, "Decoder"]]:
    from htr_tf.decode import build_decoder

    decoding = getattr(pipeline.backend, "decoding", None)     # the recogniser's tuned settings
    decs = [pipeline.decoder] if not decoders else [build_decoder(d, decoding) for d in decoders]
    out, seen = [], Counter()
    for d in decs:
        name = getattr(d, "name", type(d).__name__)
        seen[name] += 1
        out.append((name if seen[name] == 1 else f"{name}#{seen[name]}", d))
    return out


def _thumbnail_png(gray: np.ndarray) -> str:
    import cv2

    from htr_tf.fileio import encode_png

    h, w = gray.shape[:2]
    if h > CROP_HEIGHT:
        w2 = max(1, int(round(w * CROP_HEIGHT / h)))
        gray = cv2.resize(gray, (w2, CROP_HEIGHT), interpolation=cv2.INTER_AREA)
    return base64.b64encode(encode_png(gray)).decode("ascii")


def _seen_crop(pipeline: "Pipeline", gray: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The line crop as the recogniser saw it (neighbours' ink painted out when the pipeline does)."""
    from htr_tf.geometry import crop

    c = crop(gray, box)
    if getattr(pipeline.options, "isolate_lines", False):
        from htr_tf.pipeline import isolate_line

        c = isolate_line(c)
    return c


def _rates(scores: dict[str, Any]) -> dict[str, Any]:
    keep = ("cer", "wer", "char_edits", "ref_chars", "char_substitutions", "char_deletions", "char_insertions",
            "word_edits", "ref_words", "word_substitutions", "word_deletions", "word_insertions")
    return {k: scores[k] for k in keep}


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


# -- the evaluation ----------------------------------------------------------------------------------
def evaluate_pipeline(pipeline: "Pipeline", records: Any, split: str = "test",
                      decoders: Sequence["str | Decoder"] | None = None, limit: int | None = None,
                      progress: Callable[[int, int], None] | None = None, worst: int = 20,
                      confusions: int = 40, sclite: bool | str | os.PathLike = False) -> dict[str, Any]:
    """Score ``pipeline`` on pages, at line level and page level, for every decoder.

    ``records`` is a form record set (path or :class:`~htr_tf.data.records.RecordSet`, its
    ``split``) or a sequence of :class:`PageSample`.  ``decoders`` are names or decoder
    objects (default: the pipeline's own; names start from the recogniser's tuned settings);
    the first one picks the ``worst`` lines kept with their image crops (base64 PNG) for the
    report.  ``progress(done, total)`` is called after each page.  ``sclite`` (True or a
    directory for the ``.trn`` files) also scores WER with NIST sclite when it is installed.
    See the module docstring for every definition.
    Decoders built here from names are closed at the end (LM decoders may hold processes).
    """
    if limit is not None and limit < 0:
        raise DataError(f"limit must be >= 0, got {limit}")
    if isinstance(records, (str, os.PathLike)) or hasattr(records, "iter_forms"):
        total, pages = pages_from_records(records, split, limit)
        source = str(getattr(records, "path", records))
    else:
        samples = list(records)[:limit] if limit is not None else list(records)
        total, pages, source, split = len(samples), iter(samples), "page files", None
    decs = _decoders(pipeline, decoders)
    owned = [d for (_, d), given in zip(decs, decoders or [None]) if isinstance(given, str)]
    try:
        report = _evaluate(pipeline, decs, pages, total, progress, worst, confusions)
    finally:
        for d in owned:
            getattr(d, "close", lambda: None)()
    report = {"kind": REPORT_KIND, "format_version": REPORT_FORMAT_VERSION, "records": source,
              "split": split, **report}
    if sclite:
        report["sclite"] = _sclite_section(report, None if sclite is True else Path(sclite))
    return report


def _evaluate(pipeline: "Pipeline", decs: list[tuple[str, "Decoder"]], pages: Iterable[PageSample], total: int,
              progress: Callable[[int, int], None] | None, worst: int, confusions: int) -> dict[str, Any]:
    """The body of :func:`evaluate_pipeline` once its inputs are resolved."""
    from htr_tf.evaluate import score_lines
    from htr_tf.layout_eval import LineCounts
    from htr_tf.pipeline import MIN_PAGE_SIDE, Pipeline

    names = [n for n, _ in decs]
    cached = _CachedBackend(pipeline.backend)
    pipes = [Pipeline(cached, d, pipeline.options) for _, d in decs]
    cs = pipeline.charset
    counts = LineCounts(IOU_THRESHOLD)
    page_rows: list[dict[str, Any]] = []
    line_rows: list[dict[str, Any]] = []
    heap: list[tuple[tuple[int, float, int], dict[str, Any]]] = []
    stage_times: dict[str, list[float]] = {k: [] for k in ("area", "lines", "printed", "recognize", "decode",
                                                              "total")}
    decode_times = {n: 0.0 for n in names}
    line_level_seconds = line_level_lines = 0.0
    has_boxes = True
    t_start = time.perf_counter()
    for page in pages:
        cached.clear()
        refs = [cs.normalize(t) for t in page.line_texts]
        hyps: dict[str, list[str]] = {}
        results = []
        # one layout per page, shared by every decoder; its lines (in the area, and outside it where
        # the line-type classifier says handwriting, before the confidence floor) are what detection scores
        layout = pipes[0].find_layout(page.image) if min(page.image.shape[:2]) >= MIN_PAGE_SIDE else None
        for (name, _), pipe in zip(decs, pipes):
            res = pipe.run(page.image, id=page.id, layout=layout)
            results.append(res)
            hyps[name] = [ln.text for ln in res.lines]
            decode_times[name] += res.timings.get("decode", 0.0)
        first = results[0].timings
        for k in ("area", "lines", "printed", "recognize", "decode"):
            stage_times[k].append(first.get(k, 0.0))
        stage_times["total"].append(sum(first.get(k, 0.0) for k in ("area", "lines", "printed", "recognize", "decode")))
        row: dict[str, Any] = {"id": page.id, "writer": page.writer, "source": page.source, "gt_lines": len(refs),
                               "detected_lines": len(results[0].lines), "ref": page_text(refs),
                               "hyp": {n: page_text(hyps[n]) for n in names},
                               "timings": {k: round(v, 4) for k, v in first.items()},
                               "warnings": list(results[0].warnings)}
        if page.line_boxes is None:
            has_boxes = False
        else:
            boxes, scores = ((layout.boxes, layout.scores) if layout is not None
                             else (np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)))
            one = LineCounts(IOU_THRESHOLD)
            one.add(boxes, scores, page.line_boxes)
            counts.add(boxes, scores, page.line_boxes)
            row["recall50"], row["precision50"] = one.as_dict()["recall"], one.as_dict()["precision"]
            line_hyps: dict[str, list[Any]] = {}
            gt_shapes = None
            if page.line_polygons is not None:          # read as training lines are cut: polygon-masked
                from htr_tf.line_shapes import LineShape

                gt_shapes = [LineShape(np.asarray(p, np.float32), np.zeros((2, 2), np.float32))
                             for p in page.line_polygons]
                row["line_crop"] = "polygon"
            for (name, _), pipe in zip(decs, pipes):
                t = time.perf_counter()
                if gt_shapes is not None:
                    line_hyps[name] = Pipeline(cached, pipe.decoder, replace(pipeline.options, line_crop="polygon")
                                               ).recognize_boxes(page.image, page.line_boxes, shapes=gt_shapes)
                else:
                    line_hyps[name] = pipe.recognize_boxes(page.image, page.line_boxes)
                if name == names[0]:
                    line_level_seconds += time.perf_counter() - t
            line_level_lines += len(refs)
            for k, (lid, ref, box) in enumerate(zip(page.line_ids, refs, page.line_boxes)):
                lrow = {"page": page.id, "id": lid, "ref": ref, "box": [round(float(v), 1) for v in box],
                        "hyp": {n: line_hyps[n][k].text for n in names},
                        "confidence": {n: round(line_hyps[n][k].confidence, 4) for n in names}}
                line_rows.append(lrow)
                edits = edit_distance(ref, lrow["hyp"][names[0]]) if worst > 0 else 0
                if edits > 0:   # only lines with errors are candidates
                    key = (edits, edits / max(len(ref), 1), -len(line_rows))
                    if len(heap) < worst or key > heap[0][0]:
                        pb = line_hyps[names[0]][k].box or tuple(box)
                        item = dict(lrow, image_png=_thumbnail_png(_seen_crop(pipeline, page.image, pb)))
                        (heapq.heappush if len(heap) < worst else heapq.heappushpop)(heap, (key, item))
        page_rows.append(row)
        if progress is not None:
            progress(len(page_rows), total)
    seconds = time.perf_counter() - t_start

    # -- scores ----------------------------------------------------------------------------------
    summary, confusion = [], {}
    page_refs = [r["ref"] for r in page_rows]
    line_refs = [r["ref"] for r in line_rows]
    for name in names:
        ps = score_lines(page_refs, [r["hyp"][name] for r in page_rows])
        for r, s in zip(page_rows, ps["lines"]):
            r.setdefault("cer", {})[name], r.setdefault("wer", {})[name] = s["cer"], s["wer"]
            r.setdefault("char_edits", {})[name] = s["char_edits"]
        entry: dict[str, Any] = {"decoder": name, "page": _rates(ps),
                                 "mean_page_cer": _mean([s["cer"] for s in ps["lines"]]),
                                 "decode_seconds_per_page": decode_times[name] / max(len(page_rows), 1)}
        if line_rows:
            hyps_l = [r["hyp"][name] for r in line_rows]
            ls = score_lines(line_refs, hyps_l)
            for r, s in zip(line_rows, ls["lines"]):
                r.setdefault("cer", {})[name], r.setdefault("char_edits", {})[name] = s["cer"], s["char_edits"]
            entry["line"] = _rates(ls)
            entry["mean_line_cer"] = ls["mean_line_cer"]
            pairs = confusion_pairs(char_alignments(line_refs, hyps_l))
            confusion[name] = [{"ref": a, "hyp": b, "count": c} for (a, b), c in pairs.most_common(confusions)]
            edits, chars = Counter(), Counter()
            for lr in line_rows:
                edits[lr["page"]] += lr["char_edits"][name]
                chars[lr["page"]] += len(lr["ref"])
            for r in page_rows:
                r.setdefault("line_cer", {})[name] = edits[r["id"]] / max(chars[r["id"]], 1)
        else:
            entry["line"] = None
        entry["per_source"] = _per_source(name, page_rows, line_rows)
        summary.append(entry)
    by_id = {(lr["page"], lr["id"]): lr for lr in line_rows}
    worst_rows = [item for _, item in sorted(heap, key=lambda x: x[0], reverse=True)]
    for w in worst_rows:
        match = by_id[(w["page"], w["id"])]
        w["cer"], w["char_edits"] = dict(match["cer"]), dict(match["char_edits"])
    n_pages = len(page_rows)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "backend": pipeline.backend.name, "options": asdict(pipeline.options),
        "decoders": [{"name": n, **_options(d)} for n, d in decs],
        "num_pages": n_pages, "num_gt_lines": sum(r["gt_lines"] for r in page_rows),
        "num_detected_lines": sum(r["detected_lines"] for r in page_rows),
        "line_level": has_boxes and bool(line_rows),
        "definitions": DEFINITIONS,
        "detection": {**counts.as_dict(), "iou": IOU_THRESHOLD} if has_boxes and n_pages else None,
        "summary": summary,
        "timings": {
            "seconds": round(seconds, 3),
            "pages_per_second": round(n_pages / seconds, 3) if seconds > 0 and n_pages else None,
            "seconds_per_page": {k: round(float(np.mean(v[1:] if len(v) > 1 else v)), 4)
                                 for k, v in stage_times.items() if v},
            "seconds_per_page_median": {k: round(float(np.median(v[1:] if len(v) > 1 else v)), 4)
                                        for k, v in stage_times.items() if v},
            "first_page_seconds": round(stage_times["total"][0], 4) if stage_times["total"] else None,
            "stage_note": f"area/lines/recognize/decode of one pipeline run with decoder {names[0]}"
                          + ("; the first page (model warm-up) is left out of the means"
                             if len(stage_times["total"]) > 1 else ""),
            "decode_seconds_per_page": {n: round(decode_times[n] / max(n_pages, 1), 4) for n in names},
            "line_level_lines_per_second": round(line_level_lines / line_level_seconds, 2)
            if line_level_seconds > 0 else None,
        },
        "confusions": confusion,
        "worst_lines": worst_rows,
        "pages": page_rows,
        "lines": line_rows,
    }


def _per_source(name: str, page_rows: list[dict[str, Any]], line_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled page and line CER of decoder ``name`` over the pages of each source."""
    source_of = {r["id"]: r.get("source") or "unknown" for r in page_rows}
    out: dict[str, dict[str, Any]] = {}
    for r in page_rows:
        d = out.setdefault(source_of[r["id"]], {"pages": 0, "page_edits": 0, "page_chars": 0,
                                                "line_edits": 0, "line_chars": 0})
        d["pages"] += 1
        d["page_edits"] += r["char_edits"][name]
        d["page_chars"] += len(r["ref"])
    for lr in line_rows:
        d = out[source_of[lr["page"]]]
        d["line_edits"] += lr["char_edits"][name]
        d["line_chars"] += len(lr["ref"])
    return {src: {"pages": d["pages"], "page_cer": d["page_edits"] / max(d["page_chars"], 1),
                  "line_cer": d["line_edits"] / d["line_chars"] if d["line_chars"] else None}
            for src, d in sorted(out.items())}


def _options(decoder: Any) -> dict[str, Any]:
    try:
        return {"options": decoder.options()}
    except Exception:  # noqa: BLE001 - a decoder without options() is still scored
        return {"options": {}}


# -- sclite ------------------------------------------------------------------------------------------
def sclite_command() -> list[str] | None:
    """How to run NIST sclite here (``sclite`` or Debian's ``sctk sclite``), or None."""
    if shutil.which("sclite"):
        return ["sclite"]
    if shutil.which("sctk"):
        return ["sctk", "sclite"]
    return None


def _trn(texts: Sequence[str], ids: Sequence[tuple[str, str]]) -> str:
    return "".join(f"{' '.join(t.split())} ({s}_{u})\n" for t, (s, u) in zip(texts, ids))


def run_sclite(refs: Sequence[str], hyps: Sequence[str], speakers: Sequence[str],
               workdir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Pooled WER by sclite (case-sensitive, ``-s``): its ``Sum`` row of ``-o rsum`` (counts).

    Utterances are ``(spkN_uM)``: speaker ``N`` numbers ``speakers`` in order of first
    appearance, ``M`` the utterance.  The ``.trn`` files stay in ``workdir`` when given.
    Raises :class:`ConfigError` when sclite is not installed.
    """
    cmd = sclite_command()
    if cmd is None:
        raise ConfigError("sclite is not installed (Debian/Ubuntu: apt-get install sctk)")
    if not (len(refs) == len(hyps) == len(speakers)):
        raise ValueError("refs, hyps and speakers must have the same length")
    spk_ids: dict[str, int] = {}
    ids = []
    for k, s in enumerate(speakers):
        spk_ids.setdefault(s, len(spk_ids) + 1)
        ids.append((f"spk{spk_ids[s]}", f"u{k + 1}"))
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="htr-sclite-")
        workdir = tmp.name
    d = Path(workdir)
    d.mkdir(parents=True, exist_ok=True)
    try:
        (d / "ref.trn").write_text(_trn(refs, ids), encoding="utf-8")
        (d / "hyp.trn").write_text(_trn(hyps, ids), encoding="utf-8")
        args = cmd + ["-s", "-r", str(d / "ref.trn"), "trn", "-h", str(d / "hyp.trn"), "trn",
                      "-i", "rm", "-o", "rsum", "stdout"]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
        out = _parse_rsum(proc.stdout)
        if out is None:
            raise ConfigError(f"could not read sclite's output (exit {proc.returncode}): "
                              f"{(proc.stderr or proc.stdout).strip()[-300:]}")
        out["command"] = " ".join(args)
        return out
    finally:
        if tmp is not None:
            tmp.cleanup()


def _parse_rsum(text: str) -> dict[str, Any] | None:
    """The ``Sum`` row of sclite's raw summary: ``| Sum | #Snt #Wrd | Corr Sub Del Ins Err S.Err |``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] in ("Sum", "Sum/Avg"):
            try:
                snt, wrd = (int(float(x)) for x in cells[1].split()[:2])
                corr, sub, dele, ins, err = (int(float(x)) for x in cells[2].split()[:5])
            except ValueError:
                return None
            return {"utterances": snt, "ref_words": wrd, "word_substitutions": sub, "word_deletions": dele,
                    "word_insertions": ins, "word_edits": err, "wer": err / max(wrd, 1)}
    return None


def _sclite_section(report: dict[str, Any], workdir: Path | None) -> dict[str, Any]:
    if sclite_command() is None:
        return {"available": False, "note": "sclite not installed (apt-get install sctk)"}
    out: dict[str, Any] = {"available": True, "per_decoder": {}}
    pages, lines = report["pages"], report["lines"]
    for entry in report["summary"]:
        name = entry["decoder"]
        res: dict[str, Any] = {}
        safe = "".join(c if c.isalnum() else "-" for c in name)
        if pages:
            s = run_sclite([p["ref"] for p in pages], [p["hyp"][name] for p in pages],
                           [p["writer"] or p["id"] for p in pages], workdir / f"{safe}-page" if workdir else None)
            res["page"] = {**s, "jiwer_wer": entry["page"]["wer"]}
        if lines:
            s = run_sclite([x["ref"] for x in lines], [x["hyp"][name] for x in lines],
                           [x["page"] for x in lines], workdir / f"{safe}-line" if workdir else None)
            res["line"] = {**s, "jiwer_wer": entry["line"]["wer"]}
        out["per_decoder"][name] = res
    return out


# -- text summary (the CLI prints it) ----------------------------------------------------------------
def format_summary(report: dict[str, Any]) -> str:
    """A short plain-text table of a report: rates per decoder, detection and speed."""
    def pct(v: Any) -> str:
        return "    -" if v is None else f"{100 * v:5.2f}"

    where = report["records"] + (f", split {report['split']}" if report.get("split") else "")
    lines = [f"{report['num_pages']} pages, {report['num_gt_lines']} ground-truth lines "
             f"({where}; backend {report['backend']})",
             f"{'decoder':<18} {'line CER':>8} {'line WER':>8} {'page CER':>8} {'page WER':>8}"]
    for e in report["summary"]:
        line, page = e.get("line") or {}, e.get("page") or {}
        lines.append(f"{e['decoder']:<18} {pct(line.get('cer')):>8} {pct(line.get('wer')):>8} "
                     f"{pct(page.get('cer')):>8} {pct(page.get('wer')):>8}")
    first = report["summary"][0] if report["summary"] else {}
    if len(first.get("per_source") or {}) > 1:
        for src, d in first["per_source"].items():
            lines.append(f"  {src:<16} {pct(d['line_cer']):>8} {'':>8} {pct(d['page_cer']):>8}   "
                         f"({d['pages']} pages, {first['decoder']})")
    det = report.get("detection")
    if det:
        lines.append(f"line detection @ IoU {det['iou']}: recall {det['recall']:.3f}, precision {det['precision']:.3f} "
                     f"({det['tp']} of {det['ground_truth']} lines found, {det['detections']} detected)")
    t = report["timings"]
    stages = ", ".join(f"{k} {v:.3f}" for k, v in t.get("seconds_per_page", {}).items())
    if stages:
        lines.append(f"seconds per page: {stages}")
    sc = report.get("sclite")
    if sc and sc.get("available"):
        for name, levels in sc["per_decoder"].items():
            lines.append(f"sclite WER {name}: " + ", ".join(
                f"{lvl} {100 * s['wer']:.2f}% (jiwer {100 * s['jiwer_wer']:.2f}%)" for lvl, s in levels.items()))
    elif sc:
        lines.append(f"sclite: {sc.get('note')}")
    return "\n".join(lines)
