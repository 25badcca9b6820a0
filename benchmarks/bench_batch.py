"""Batch OCR throughput: pages/s and peak memory per process for `htr ocr --out` in one process,
`htr ocr --out --workers 2`, and `htr beam` on the DirectRunner with 2 worker processes; prints JSON.

    python benchmarks/bench_batch.py                       # 40 synthetic forms, all three modes
    python benchmarks/bench_batch.py --pages 8 --modes single,workers
    python benchmarks/bench_batch.py --images DIR          # your own pages instead

Each mode runs the real command line as a subprocess into a fresh output directory over the
same pages, after a warm-up run of the single process on two pages (disk cache, TensorFlow's
first start).  Measured per mode:

* ``wall_s`` and ``pages_per_s``: from start to exit, model loading included (what a user
  waits for);
* ``steady_pages_per_s``: from the first page written to the last (``(n-1)/span`` of the
  output files' modification times): the rate once the models are loaded;
* ``processes``: the peak resident memory (VmHWM) of every process of the run with more than
  50 MB, sampled from /proc every 0.2 s, with its role (main, worker);
* ``cpu_s`` (this run's processes), ``cpu_s_per_page`` (the single process's CPU seconds per
  page once loaded: its run minus the 2-page warm-up, divided by the other pages) and
  ``others_cores``: the CPU the rest of the machine used meanwhile (from /proc/stat), because
  this machine may be shared: a speed-up measured while other processes hold the cores says
  little (``note`` says so when they held more than a quarter of them).  ``load_before`` /
  ``load_after``: load average.

The synthetic pages are ``htr data synth --pages N --seed 15`` forms (2479 x 3542 px),
made once into ``--cache`` (default: ~/.cache/htr-tf/bench_batch).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("single", "workers", "beam")
_CLK = os.sysconf("SC_CLK_TCK")


def _pages_dir(args: argparse.Namespace) -> Path:
    if args.images:
        return Path(args.images)
    cache = Path(args.cache).expanduser() / f"synth-{args.pages}-seed15"
    forms = cache / "forms"
    if not (cache / "synth.json").exists():
        from htr_tf.data.synth import synthesize

        if cache.exists():
            shutil.rmtree(cache)
        synthesize(cache, pages=args.pages, seed=15, progress=False)
    return forms


def _cpu_busy() -> float:
    """Seconds all CPUs spent not idle, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / _CLK


def _children(pid: int) -> list[int]:
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        kids = []
        try:
            for tid in os.listdir(f"/proc/{p}/task"):      # children of every thread, not only the main one
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids.extend(int(x) for x in f.read().split())
        except OSError:
            pass
        out.extend(kids)
        stack.extend(kids)
    return out


def _status(pid: int) -> tuple[float, str] | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            hwm = next((float(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:")), 0.0)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        return hwm, cmd
    except OSError:
        return None


def _role(cmd: str, main: bool) -> str:
    if main:
        return "main"
    if "sdk_worker_main" in cmd:
        return "beam worker"
    if "multiprocessing" in cmd or "spawn_main" in cmd:
        return "worker"
    return cmd[:60]


def _run(cmd: list[str], out: Path, n_pages: int, suffix: str) -> dict:
    """Run ``cmd``; wall time, output-file span, peak memory per process, CPU."""
    import resource

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    load_before = os.getloadavg()
    busy0, ru0 = _cpu_busy(), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    peaks: dict[int, tuple[float, str]] = {}
    while proc.poll() is None:
        for pid in [proc.pid, *_children(proc.pid)]:
            st = _status(pid)
            if st and st[0] >= peaks.get(pid, (0.0, ""))[0]:
                peaks[pid] = st
        time.sleep(0.2)
    wall = time.time() - t0
    err = proc.stderr.read() if proc.stderr else ""
    busy = _cpu_busy() - busy0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    outputs = sorted(p.stat().st_mtime for p in out.rglob(f"*{suffix}") if p.is_file() and not p.name.startswith("."))
    steady = (len(outputs) - 1) / (outputs[-1] - outputs[0]) if len(outputs) > 1 and outputs[-1] > outputs[0] else None
    processes = [{"role": _role(cmd_, pid == proc.pid), "peak_rss_mb": round(hwm, 1)}
                 for pid, (hwm, cmd_) in sorted(peaks.items()) if hwm > 50]
    return {"returncode": proc.returncode, "pages_written": len(outputs), "wall_s": round(wall, 2),
            "pages_per_s": round(n_pages / wall, 3), "first_output_s": round(outputs[0] - t0, 2) if outputs else None,
            "steady_pages_per_s": round(steady, 3) if steady else None, "processes": processes,
            "cpu_s": round(cpu, 1), "cores_used": round(cpu / wall, 2), "others_cores": round(max(0.0, busy - cpu) / wall, 2),
            "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
            "summary": next((line for line in err.splitlines() if "page(s):" in line), err.strip()[-500:])}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, default=40, help="synthetic pages (default 40)")
    ap.add_argument("--images", default=None, help="a directory of page images instead of synthetic pages")
    ap.add_argument("--cache", default="~/.cache/htr-tf/bench_batch", help="where the synthetic pages are kept")
    ap.add_argument("--modes", default=",".join(MODES), help="single, workers (--workers 2), beam (DirectRunner, 2 workers)")
    ap.add_argument("--decoder", default="greedy")
    ap.add_argument("--format", default="text")
    ap.add_argument("--quick", action="store_true", help="8 pages, for a smoke run")
    args = ap.parse_args(argv)
    if args.quick:
        args.pages = 8
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown:
        ap.error(f"unknown mode(s) {', '.join(sorted(unknown))}; choose from {', '.join(MODES)}")
    pages = _pages_dir(args)
    images = sorted(p for p in pages.iterdir() if p.suffix.lower() in (".png", ".jpg", ".tif", ".tiff"))
    if not args.images:
        images = images[: args.pages]
    n = len(images)
    from htr_tf.outputs import SUFFIXES

    suffix = SUFFIXES[args.format]
    htr = [sys.executable, "-m", "htr_tf.cli"]
    common = ["--decoder", args.decoder, "--format", args.format]
    import importlib.util

    has_beam = importlib.util.find_spec("apache_beam") is not None
    result: dict = {"benchmark": "batch", "pages": n, "page_size": None, "decoder": args.decoder,
                    "format": args.format, "cpu": platform.processor() or platform.machine(),
                    "cores": len(os.sched_getaffinity(0)), "date": time.strftime("%Y-%m-%d %H:%M"), "modes": {}}
    try:
        import cv2

        img = cv2.imread(str(images[0]), cv2.IMREAD_UNCHANGED)
        result["page_size"] = [int(img.shape[1]), int(img.shape[0])]
    except Exception:  # noqa: BLE001 - informational only
        pass
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        tmpd = Path(tmp)
        src = tmpd / "pages"
        src.mkdir()
        for p in images:
            os.symlink(p.resolve(), src / p.name)
        warm = tmpd / "warm-in"
        warm.mkdir()
        for p in images[:2]:
            os.symlink(p.resolve(), warm / p.name)
        w = _run([*htr, "ocr", str(warm), "--out", str(tmpd / "warm-out"), *common], tmpd / "warm-out", 2, suffix)
        result["warm_up"] = {"pages": 2, "wall_s": w["wall_s"], "cpu_s": w["cpu_s"]}
        for mode in modes:
            out = tmpd / f"out-{mode}"
            if mode == "single":
                cmd = [*htr, "ocr", str(src), "--out", str(out), *common]
            elif mode == "workers":
                cmd = [*htr, "ocr", str(src), "--out", str(out), "--workers", "2", *common]
            else:
                if not has_beam:
                    result["modes"][mode] = {"skipped": "apache_beam is not installed (pip install \"htr-tf[beam]\")"}
                    continue
                cmd = [*htr, "beam", "--input", str(src), "--output", str(out), *common, "--runner", "DirectRunner",
                       "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]
            result["modes"][mode] = {"command": " ".join(["htr", *cmd[3:]]).replace(str(tmpd), "$TMP"),
                                     **_run(cmd, out, n, suffix)}
    busy = [r["others_cores"] for r in result["modes"].values() if "others_cores" in r]
    if busy and max(busy) > 0.25 * result["cores"]:
        result["note"] = (f"the machine was busy: other processes used up to {max(busy):.2f} of its "
                          f"{result['cores']} cores during a run, so the pages/s and speed-ups measure the "
                          "share of CPU each run got, not what the modes can do on a quiet machine")
    single = result["modes"].get("single", {})
    if single.get("cpu_s") and n > 2:
        # CPU per page once loaded: the 40-page run minus the 2-page warm-up (same start-up work),
        # much less sensitive to other processes than pages/s.
        result["cpu_s_per_page"] = round((single["cpu_s"] - result["warm_up"]["cpu_s"]) / (n - 2), 3)
    for mode, r in result["modes"].items():
        if mode != "single" and single.get("pages_per_s") and r.get("pages_per_s"):
            r["speedup_vs_single"] = round(r["pages_per_s"] / single["pages_per_s"], 2)
            if r.get("steady_pages_per_s") and single.get("steady_pages_per_s"):
                r["steady_speedup_vs_single"] = round(r["steady_pages_per_s"] / single["steady_pages_per_s"], 2)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
