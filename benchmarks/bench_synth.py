"""Speed of synthetic IAM-format form generation on one CPU core; prints JSON.

    python benchmarks/bench_synth.py [--pages 20] [--scale 1.0] [--workers 1]

The process is pinned to one core (``--workers 1``), so ``pages_per_s`` is the one-core rate
of the whole ``htr data synth`` path: rendering plus IAMWriter's PNG/XML/crop writing.
``cpu_pages_per_s`` divides by this process's CPU time instead of wall time: on a shared,
busy machine it is the better estimate of what an idle core does.  A second pass times
rendering and writing separately.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pages", type=int, default=20)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    from htr_tf.data import synth
    from htr_tf.data.iam import IAMWriter
    from htr_tf.data.text import load_sentences

    if a.workers == 1 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    tmp = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    try:
        load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        t0, c0 = time.perf_counter(), time.process_time()
        summary = synth.synthesize(tmp / "run", pages=a.pages, seed=a.seed, workers=a.workers,
                                   progress=False, scale=a.scale)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0

        # Breakdown (one process): startup, rendering and writing.
        t = time.perf_counter()
        fonts = tuple(synth.load_fonts())
        sentences = load_sentences()
        startup = time.perf_counter() - t
        render = write = 0.0
        with IAMWriter(tmp / "parts") as w:
            for task in synth._tasks(a.pages, a.seed + 1, sentences, fonts, a.scale, 2, 0):
                t = time.perf_counter()
                form, page, split = synth.render_form(task)
                render += time.perf_counter() - t
                t = time.perf_counter()
                w.add_form(form, page, split)
                write += time.perf_counter() - t
        size = sum(f.stat().st_size for f in (tmp / "run").rglob("*") if f.is_file())
        print(json.dumps({
            "benchmark": "synth",
            "pages": a.pages,
            "scale": a.scale,
            "workers": a.workers,
            "pages_per_s": round(a.pages / wall, 3),
            "cpu_pages_per_s": round(a.pages / cpu, 3) if a.workers == 1 else None,
            "seconds": round(wall, 3),
            "lines": summary["lines"],
            "words": summary["words"],
            "startup_s": round(startup, 3),
            "render_s_per_page": round(render / a.pages, 4),
            "write_s_per_page": round(write / a.pages, 4),
            "mb_per_page": round(size / a.pages / 1e6, 3),
            "load_average_before": load0,
            "machine": _machine(),
        }))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
