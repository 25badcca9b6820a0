"""Speed of the v2 synthetic handwriting generator on one CPU core; prints JSON.

    python benchmarks/bench_synth_v2.py [--lines 300] [--pages 4] [--seed 0]

The process is pinned to one core.  ``lines_per_s``: the whole ``htr data synth --lines``
path (rendering, PNG, TFRecord writing) after start-up; ``pages_per_s``: ``htr data synth
--style v2 --pages`` at IAM's size (rendering plus IAMWriter's files).  The ``cpu_*`` rates
divide by this process's CPU time instead of wall time: on a shared, busy machine they are
the better estimate of what an idle core does.  ``render_ms_by_kind``: mean rendering time of
one line by font writers and by the pen simulator, and ``keras_ms``: of a line given a Keras
augmentation layer.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=300)
    p.add_argument("--pages", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    from bench_synth import _machine

    from htr_tf.data import synth, synth_lines

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    tmp = Path(tempfile.mkdtemp(prefix="bench_synth_v2_"))
    try:
        load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        fonts = synth_lines.load_v2_fonts()
        # warm-up (TensorFlow import for the record writer and the Keras layers, font caches)
        synth_lines.synthesize_lines(tmp / "warm", lines=8, seed=a.seed + 99, progress=False)
        t0, c0 = time.perf_counter(), time.process_time()
        s = synth_lines.synthesize_lines(tmp / "lines", lines=a.lines, seed=a.seed, progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0

        by_kind: dict[str, list[float]] = {}
        keras: list[float] = []
        for t in synth_lines.iter_line_tasks(min(a.lines, 120), seed=a.seed + 1, lines_per_writer=1):
            c = time.process_time()
            _, info = synth_lines.render_line(t)
            dt = (time.process_time() - c) * 1000
            (keras if "keras" in info else by_kind.setdefault(t.style.kind, [])).append(dt)

        t1, c1 = time.perf_counter(), time.process_time()
        fs = synth.synthesize(tmp / "forms", pages=a.pages, seed=a.seed, style="v2", progress=False)
        fwall, fcpu = time.perf_counter() - t1, time.process_time() - c1
        size = sum(f.stat().st_size for f in (tmp / "lines").glob("*.tfrecord"))
        print(json.dumps({
            "benchmark": "synth_v2",
            "lines": a.lines,
            "lines_per_s": round(a.lines / wall, 2),
            "cpu_lines_per_s": round(a.lines / cpu, 2),
            "kb_per_line": round(size / a.lines / 1e3, 1),
            "writers": s["writers"],
            "render_ms_by_kind": {k: round(sum(v) / len(v), 1) for k, v in sorted(by_kind.items())},
            "keras_ms": round(sum(keras) / len(keras), 1) if keras else None,
            "pages": a.pages,
            "pages_per_s": round(a.pages / fwall, 3),
            "cpu_pages_per_s": round(a.pages / fcpu, 3),
            "form_lines": fs["lines"],
            "fonts": len(fonts),
            "load_average_before": load0,
            "machine": _machine(),
        }))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
