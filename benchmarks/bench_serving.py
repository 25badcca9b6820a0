"""Pages/s and latency of the full pipeline over gRPC (``htr serve``) against in process; prints JSON.

Exports the bundled models into a throw-away model repository (or takes ``--repository``),
starts ``htr serve`` in a subprocess on a free loopback port, and runs
``Pipeline(backend, decoder).run(page)`` from 1, 4 and 16 concurrent client threads over
a few form pages, for three backends:

* ``in_process``: ``LocalBackend`` (the Keras bundles in this process);
* ``savedmodel_in_process``: ``GrpcBackend``'s own code with the repository's SavedModels
  called in this process instead of over gRPC (:class:`InProcessClient`: the same
  signatures the server runs, the same client-side pre- and post-processing);
* ``grpc``: ``GrpcBackend`` against the server (one connection per client thread).

So ``grpc`` and ``savedmodel_in_process`` differ only by gRPC itself (serialising, the
loopback, the server's threads): ``grpc_overhead`` is ``1 - grpc pages/s /
savedmodel_in_process pages/s`` per level (``grpc_overhead_vs_keras`` against
``in_process``).  At each level the backends run one after the other; each runs until
``--pages-per-level`` pages (at least one per client) or ``--seconds`` have passed, after one
warm-up page.  The page texts of every backend are compared with ``in_process``.  At the end
the server gets SIGTERM and must exit 0::

    python benchmarks/bench_serving.py [--pages DIR] [--n-pages 4] [--clients 1,4,16]

The CPU is shared, so the JSON records the load average around each level.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

def load_pages(src: str | None, n: int, seed: int) -> tuple[list[np.ndarray], str]:
    """``n`` gray pages from a directory of images, or synthetic IAM forms rendered in memory."""
    from htr_tf.fileio import read_image

    if src:
        d = Path(src)
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff")) \
            if d.is_dir() else []
        if not files:
            raise SystemExit(f"{src}: no images")
        return [read_image(p) for p in files[:n]], "page images given with --pages"
    from htr_tf.data.synth import PageTask, load_fonts, render_form
    from htr_tf.data.text import load_sentences

    sentences, fonts = load_sentences(None), tuple(load_fonts(None))
    pages = []
    for i in range(n):
        _, page, _ = render_form(PageTask(index=i, seed=seed + i, writer=i, sentences=tuple(sentences[6 * i: 6 * i + 6]),
                                          fonts=fonts))
        pages.append(page)
    return pages, "rendered synthetic forms (htr_tf.data.synth.render_form)"


class InProcessClient:
    """``htr_tf.serving.Client.predict`` answered by the repository's SavedModels in this process
    (the latest version of each), for ``GrpcBackend`` without gRPC."""

    def __init__(self, repo: Path) -> None:
        import tensorflow as tf

        from htr_tf.serving.client import Prediction
        from htr_tf.serving.repository import available_versions

        self.address, self._prediction = "in-process", Prediction
        self.models = {}
        for name in ("recognizer", "paragraph", "lines"):
            version = available_versions(repo / name)[-1]
            self.models[name] = (version, tf.saved_model.load(str(repo / name / str(version))).signatures)

    def predict(self, model, inputs, signature="serving_default", version=None, version_label=None,
                output_filter=None, timeout=None):
        import tensorflow as tf

        v, signatures = self.models[model]
        if signature not in signatures:                # what the server answers, so the backend falls back
            from htr_tf.errors import ModelError

            err = ModelError(f"{model} has no signature {signature!r}")
            err.grpc_code = "FAILED_PRECONDITION"  # type: ignore[attr-defined]
            raise err
        out = signatures[signature](**{k: tf.constant(x) for k, x in inputs.items()})
        result = self._prediction({k: t.numpy() for k, t in out.items() if not output_filter or k in output_filter})
        result.model, result.version, result.signature = model, v, signature
        return result

    def close(self) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_level(make_pipeline, pages: list[np.ndarray], clients: int, max_pages: int, seconds: float
              ) -> tuple[dict, dict[int, str]]:
    """``clients`` threads running pages round-robin; pages/s, latency percentiles, texts by page."""
    pipes = [make_pipeline() for _ in range(clients)]
    texts: dict[int, str] = {}
    texts[0] = pipes[0].run(pages[0]).text         # warm-up (graphs); each gRPC client connected above
    lock = threading.Lock()
    latencies: list[float] = []
    counter = [0]
    errors: list[str] = []
    stop_at = time.perf_counter() + seconds
    target = max(max_pages, clients)

    def worker(pipe) -> None:
        while True:
            with lock:
                if counter[0] >= target or time.perf_counter() > stop_at:
                    return
                i = counter[0]
                counter[0] += 1
            t = time.perf_counter()
            try:
                text = pipe.run(pages[i % len(pages)]).text
            except Exception as e:  # recorded, not fatal: the JSON says what failed
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
                return
            dt = time.perf_counter() - t
            with lock:
                latencies.append(dt)
                texts.setdefault(i % len(pages), text)

    load_before = os.getloadavg()
    threads = [threading.Thread(target=worker, args=(p,)) for p in pipes]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    lat = np.array(latencies) if latencies else np.array([np.nan])
    out = {"clients": clients, "pages": len(latencies), "seconds": round(wall, 2),
           "pages_per_s": round(len(latencies) / wall, 3) if wall > 0 else None,
           "latency_p50_s": round(float(np.percentile(lat, 50)), 3),
           "latency_p99_s": round(float(np.percentile(lat, 99)), 3),
           "loadavg_before": [round(x, 2) for x in load_before],
           "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    if errors:
        out["errors"] = errors[:5]
    for p in pipes:
        close = getattr(p.backend, "close", None)
        if close:
            close()
    return out, texts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", help="directory of page images (default: synthetic IAM-format forms rendered "
                                    "in memory by htr_tf.data.synth.render_form)")
    ap.add_argument("--n-pages", type=int, default=4)
    ap.add_argument("--repository", help="an exported model repository (default: export the bundled models)")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--pages-per-level", type=int, default=16, help="pages timed per level (at least one per client)")
    ap.add_argument("--seconds", type=float, default=120.0, help="at most this long per level")
    ap.add_argument("--decoder", default="greedy")
    ap.add_argument("--max-concurrent", type=int, default=4, help="the server's --max-concurrent")
    ap.add_argument("--backends", default="in_process,savedmodel_in_process,grpc")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)

    from htr_tf.pipeline import LocalBackend, Pipeline
    from htr_tf.serving import Client, GrpcBackend
    from htr_tf.serving.repository import write_repository

    levels = [int(c) for c in a.clients.split(",")]
    backends = a.backends.split(",")
    pages, source = load_pages(a.pages, a.n_pages, a.seed)
    result: dict = {"benchmark": "serving", "host": platform.node(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "decoder": a.decoder, "page_source": source,
                    "page_sizes": [list(p.shape[::-1]) for p in pages], "levels": levels}
    tmp = tempfile.TemporaryDirectory(prefix="bench-serving-")
    repo = Path(a.repository) if a.repository else Path(tmp.name) / "repo"
    if not a.repository:
        t = time.perf_counter()
        write_repository(repo)
        result["export_seconds"] = round(time.perf_counter() - t, 1)

    port = free_port()
    log_path = Path(tmp.name) / "serve.log"
    t = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "htr_tf.cli", "serve", "--repository", str(repo), "--port", str(port),
         "--max-concurrent", str(a.max_concurrent), "--max-queue", "32"],
        stdout=subprocess.DEVNULL, stderr=open(log_path, "w"))
    address = f"127.0.0.1:{port}"
    try:
        with Client(address, retries=50, backoff=0.2, max_backoff=1.0) as c:
            c.wait_until_available(["recognizer", "paragraph", "lines"], timeout=300)
        result["server_start_seconds"] = round(time.perf_counter() - t, 1)
        result["server"] = {"address": address, "max_concurrent": a.max_concurrent, "max_queue": 32}

        local = LocalBackend.load()
        factories = {
            "in_process": lambda: Pipeline(local, a.decoder),
            "grpc": lambda: Pipeline(GrpcBackend.connect(address), a.decoder),
        }
        if "savedmodel_in_process" in backends:
            sm = GrpcBackend(InProcessClient(repo))
            factories["savedmodel_in_process"] = lambda: Pipeline(sm, a.decoder)
        runs: dict[str, list[dict]] = {name: [] for name in backends}
        texts: dict[str, dict[int, str]] = {name: {} for name in backends}
        for n in levels:               # backends side by side at each level: they share the CPU's load
            for name in backends:
                level, t_ = run_level(factories[name], pages, n, a.pages_per_level, a.seconds)
                runs[name].append(level)
                texts[name].update(t_)
                print(f"{name} x{n}: {level['pages_per_s']} pages/s, p50 {level['latency_p50_s']} s, "
                      f"load {level['loadavg_after'][0]}", file=sys.stderr, flush=True)
        result["runs"] = runs
        def overhead(name: str, ref: str) -> dict[str, float]:
            return {str(g["clients"]): round(1 - g["pages_per_s"] / r["pages_per_s"], 3)
                    for g, r in zip(runs[name], runs[ref]) if g["pages_per_s"] and r["pages_per_s"]}

        if "grpc" in runs and "savedmodel_in_process" in runs:
            result["grpc_overhead"] = overhead("grpc", "savedmodel_in_process")
        if "grpc" in runs and "in_process" in runs:
            result["grpc_overhead_vs_keras"] = overhead("grpc", "in_process")
        for name in runs:
            if name != "in_process" and "in_process" in runs:
                same = [texts[name].get(i) == texts["in_process"].get(i)
                        for i in range(len(pages)) if i in texts[name] and i in texts["in_process"]]
                result[f"{name}_same_text_as_in_process"] = f"{sum(same)}/{len(same)} pages"
        result["lines_per_page"] = [len([ln for r in local_r.regions for ln in r.lines])
                                    for local_r in (Pipeline(local, a.decoder).run(p) for p in pages[:2])]
    finally:
        t = time.perf_counter()
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            code = "killed after 60 s"
        result["server_sigterm"] = {"exit_code": code, "seconds": round(time.perf_counter() - t, 2)}
        tmp.cleanup()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
