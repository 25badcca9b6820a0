"""Seconds per page for each stage of the page pipeline (area, lines, recognize, decode); prints JSON.

Runs :class:`htr_tf.pipeline.Pipeline` on page images (files, or the form records of a
record set) after one warm-up page, and reports the mean and median seconds per stage and
per page, the layout time (area + lines + printed lines outside the area, the lines stages
including their polygons and baselines, against the target of 0.15 s per IAM-size page), process CPU seconds per page
(a steadier number than wall time on a shared machine), lines per page, and the threads
TensorFlow used::

    python benchmarks/bench_page.py --records RECORDS --split test --pages 20   # form records (htr data ...)
    python benchmarks/bench_page.py htr_tf/assets/examples/page-1.png --repeat 5 --threads 2
    python benchmarks/bench_page.py --records ... --backend tflite       # LiteRT models

The machine may be shared: the JSON records the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

#: Layout (area + lines + printed lines, with their polygons and baselines) seconds per IAM-size page: the
#: target of issue 14 on this project's 2-core CPU.
LAYOUT_TARGET_SECONDS = 0.15


def _pages(args: argparse.Namespace) -> list[tuple[str, np.ndarray]]:
    from htr_tf.fileio import decode_image, read_image

    if args.images:
        return [(p, read_image(p)) for p in args.images]
    from htr_tf.data.records import RecordSet

    out = []
    for ex in RecordSet(args.records).iter_forms(args.split):
        out.append((ex["id"], decode_image(ex["image"], ex["id"])))
        if len(out) >= args.pages:
            break
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("images", nargs="*", help="page image files (else --records)")
    ap.add_argument("--records", help="record set with form records")
    ap.add_argument("--split", default="test")
    ap.add_argument("--pages", type=int, default=20, help="pages taken from --records")
    ap.add_argument("--repeat", type=int, default=1, help="passes over the pages")
    ap.add_argument("--backend", default="local")
    ap.add_argument("--decoder", default="greedy")
    ap.add_argument("--threads", type=int, default=0, help="TF intra-op threads (0: TF's default)")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args(argv)
    if not args.images and not args.records:
        ap.error("give page images or --records")

    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from htr_tf.pipeline import PipelineOptions, load_pipeline

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    pipe = load_pipeline(args.backend, args.decoder, PipelineOptions(batch_size=args.batch_size))
    load_s = time.perf_counter() - t0
    pages = _pages(args)
    pipe.run(pages[0][1])                                        # warm-up: traces the graphs
    stages: dict[str, list[float]] = {}
    totals, cpu, layout, n_lines, sizes = [], [], [], [], []
    for _ in range(args.repeat):
        for _, gray in pages:
            t, c = time.perf_counter(), time.process_time()
            r = pipe.run(gray)
            totals.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            n_lines.append(len(r.lines))
            sizes.append(gray.shape)
            layout.append(sum(r.timings.get(k, 0.0) for k in ("area", "lines", "printed")))
            for k, v in r.timings.items():
                stages.setdefault(k, []).append(v)
    report = {
        "benchmark": "page_pipeline",
        "backend": args.backend, "decoder": args.decoder, "pages": len(pages), "repeat": args.repeat,
        "source": args.records or "files", "split": args.split if args.records else None,
        "seconds_per_page": {"mean": round(statistics.mean(totals), 4),
                             "median": round(statistics.median(totals), 4),
                             "p90": round(float(np.percentile(totals, 90)), 4)},
        "seconds_per_stage_mean": {k: round(statistics.mean(v), 4) for k, v in stages.items()},
        "layout_seconds_per_page": {"mean": round(statistics.mean(layout), 4),
                                    "median": round(statistics.median(layout), 4),
                                    "target": LAYOUT_TARGET_SECONDS,
                                    "within_target": statistics.median(layout) <= LAYOUT_TARGET_SECONDS},
        "cpu_seconds_per_page": round(statistics.mean(cpu), 4),
        "page_size_median": [int(statistics.median(s[0] for s in sizes)), int(statistics.median(s[1] for s in sizes))],
        "lines_per_page": round(statistics.mean(n_lines), 2),
        "model_load_seconds": round(load_s, 2),
        "threads": args.threads or "tf default",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "tensorflow": tf.__version__,
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
