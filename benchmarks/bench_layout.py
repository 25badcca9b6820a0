"""Layout speed (and accuracy, given records): ms per page per stage, printed as JSON.

Stages of one page, as ``ParagraphModel.detect`` + ``LineDetector.detect`` run them:
paragraph pre-processing (area resize + pad), model, post-processing (mask -> box); line
pre-processing (crop, resize, pad), model, post-processing (components -> boxes).

    python benchmarks/bench_layout.py                                  # bundled models, synthetic pages
    python benchmarks/bench_layout.py --records RECORDS --split test --pages 30  # form records (htr data ...)
    python benchmarks/bench_layout.py --threads 1                      # one CPU core

Without ``--records`` the pages are rendered in memory by :func:`htr_tf.data.synth.render_form`
(IAM size, 2479 x 3542).  With records, it also reports the area's mean IoU and the lines'
recall/precision at IoU 0.5 against the records' ground truth (area from the paragraph model).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _pages(args: argparse.Namespace) -> list[tuple[np.ndarray, dict | None]]:
    if args.records:
        from htr_tf.data.records import RecordSet
        from htr_tf.fileio import decode_image

        out = []
        for ex in RecordSet(args.records).iter_forms(args.split):
            out.append((decode_image(ex["image"]), ex))
            if len(out) >= args.pages:
                break
        return out
    from htr_tf.data.synth import PageTask, load_fonts, render_form
    from htr_tf.data.text import load_sentences

    sentences, fonts = load_sentences(None), tuple(load_fonts(None))
    tasks = [PageTask(index=i, seed=7, writer=i, sentences=tuple(sentences[10 * i: 10 * i + 6]), fonts=fonts)
             for i in range(args.pages)]
    return [(render_form(t)[1], None) for t in tasks]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paragraph", default=None, help="paragraph bundle (default: bundled)")
    p.add_argument("--lines", default=None, help="lines bundle (default: bundled)")
    p.add_argument("--records", default=None, help="form record set (default: synthetic pages in memory)")
    p.add_argument("--split", default="test")
    p.add_argument("--pages", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3, help="passes over the pages (the first warms up)")
    p.add_argument("--threads", type=int, default=0, help="TF intra-op threads (0: TensorFlow's default)")
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        import cv2

        cv2.setNumThreads(args.threads)
    from htr_tf.commands.layout_args import load_layout_model
    from htr_tf.geometry import box_iou
    from htr_tf.layout_eval import precision_recall

    par = load_layout_model("paragraph", args.paragraph)
    lin = load_layout_model("lines", args.lines)
    pages = _pages(args)
    stages = {k: [] for k in ("paragraph_pre", "paragraph_model", "paragraph_post", "lines_pre", "lines_model",
                              "lines_post", "total")}
    ious, dets, gts, n_lines = [], [], [], []
    for rep in range(args.repeats):
        for page, ex in pages:
            t = [time.perf_counter()]
            x, scale = par.preprocess(page)
            t.append(time.perf_counter())
            prob = par.masks(x[None])[0]
            t.append(time.perf_counter())
            area, _ = par.postprocess(prob, scale, page.shape)
            t.append(time.perf_counter())
            xl, origin, lscale = lin.preprocess(page, area)
            t.append(time.perf_counter())
            lprob = lin.mask(xl)
            t.append(time.perf_counter())
            boxes, scores = lin.postprocess(lprob, origin, lscale, page.shape)
            t.append(time.perf_counter())
            if rep == 0:
                n_lines.append(len(boxes))
                if ex is not None:
                    ious.append(float(box_iou(area, ex["paragraph_box"])[0, 0]))
                    dets.append((boxes, scores))
                    gts.append(np.asarray(ex["line_boxes"]).reshape(-1, 4))
                continue  # warm-up pass: not timed
            for k, (a, b) in zip(stages, zip(t[:-1], t[1:])):
                stages[k].append(1000 * (b - a))
            stages["total"].append(1000 * (t[-1] - t[0]))
    result = {
        "benchmark": "layout", "pages": len(pages), "timed_passes": max(args.repeats - 1, 0),
        "page_size": list(pages[0][0].shape) if pages else None,
        "source": args.records or "synthetic IAM-size forms (render_form)",
        "models": {"paragraph": {"params": par.count_params(), "input": [par.config.input_height,
                                                                        par.config.input_width]},
                   "lines": {"params": lin.count_params(), "input_width": lin.config.input_width}},
        "ms_per_page_median": {k: round(statistics.median(v), 2) for k, v in stages.items() if v},
        "ms_per_page_mean": {k: round(statistics.fmean(v), 2) for k, v in stages.items() if v},
        "lines_per_page": round(statistics.fmean(n_lines), 2) if n_lines else None,
        "threads": args.threads or "default", "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2), "machine": platform.machine(),
        "tensorflow": tf.__version__,
    }
    if ious:
        pr = precision_recall(dets, gts, 0.5)
        result["accuracy"] = {"paragraph_mean_iou": round(float(np.mean(ious)), 4),
                              "lines_recall50": round(pr["recall"], 4), "lines_precision50": round(pr["precision"], 4),
                              "area": "paragraph model (end to end)"}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
