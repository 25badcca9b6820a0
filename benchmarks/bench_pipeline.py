"""Line input pipeline throughput (lines/s), with and without augmentation; prints JSON.

Renders ``--lines`` text lines (OpenCV Hershey fonts, random words, IAM-like crops of
``--height`` pixels, random slant and stroke weight) into a throw-away record set, then
times ``htr_tf.data.pipelines.line_dataset`` in training mode (shuffle, decode, augment,
resize, bucket by width, batch, prefetch) over ``--epochs`` passes after a warm-up pass::

    python benchmarks/bench_pipeline.py [--lines 2000] [--height 120] [--batch 32] [--no-augment]

The machine is shared, so the JSON records the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at "
         "which but have an they you were her she there been one all we their Letters Orders "
         "Instructions October 1755 Sir, Captain; it's Winchester Companies Rangers delivered "
         "Plantation twelve hundred thousand weight Flour Barrel Flints Arms").split()


def render_line(text: str, height: int, rng: np.random.Generator) -> np.ndarray:
    """A gray uint8 line image about ``height`` pixels tall (dark ink on light paper)."""
    import cv2

    font = [cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_COMPLEX][rng.integers(3)]
    scale = height / 60.0
    thick = max(1, int(round(scale * rng.uniform(1.5, 3.0))))
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    img = np.full((height, tw + height // 2), int(rng.integers(215, 256)), np.uint8)
    cv2.putText(img, text, (height // 4, int(height * 0.68)), font, scale, int(rng.integers(0, 70)), thick, cv2.LINE_AA)
    shear = rng.uniform(-0.3, 0.3)
    m = np.float32([[1, shear, -shear * height / 2], [0, 1, 0]])
    return cv2.warpAffine(img, m, (img.shape[1], height), borderValue=int(img[0, 0]))


def build_records(out: Path, n: int, height: int, seed: int) -> dict:
    from htr_tf.charset import Charset
    from htr_tf.data.records import LineExample, RecordSetWriter
    from htr_tf.fileio import encode_png

    cs = Charset()
    rng = np.random.default_rng(seed)
    pyrng = random.Random(seed)
    widths = []
    with RecordSetWriter(out, source="bench", charset=cs, per_shard=500) as w:
        for i in range(n):
            text = " ".join(pyrng.choice(WORDS) for _ in range(pyrng.randint(3, 9)))
            img = render_line(text, height, rng)
            widths.append(img.shape[1])
            w.add_line("train", LineExample(id=f"b{i:05d}", image_png=encode_png(img), height=img.shape[0],
                                            width=img.shape[1], text=text, ids=cs.encode(text)))
    return {"mean_crop_width": float(np.mean(widths)), "crop_height": height}


def time_pipeline(records: Path, *, batch_size: int, augment: bool, epochs: int, seed: int) -> dict:
    from htr_tf.data.pipelines import line_dataset

    ds = line_dataset(records, "train", batch_size=batch_size, training=True, augment=augment, seed=seed)
    n_warm = sum(int(y.shape[0]) for _, y in ds)  # traces the graph and fills caches
    t0, c0 = time.perf_counter(), time.process_time()
    n, pixels = 0, 0
    for _ in range(epochs):
        for x, _ in ds:
            n += int(x["width"].shape[0])
            pixels += int(np.prod(x["image"].shape))
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    # CPU time of this process (all threads): on a shared machine wall-clock lines/s also
    # measures the other users; cpu_ms_per_line does not (much)
    return {"lines_per_s": round(n / dt, 1), "cpu_ms_per_line": round(1000 * dc / max(n, 1), 2),
            "cores_used": round(dc / dt, 2), "lines_timed": n, "seconds": round(dt, 2),
            "warmup_lines": n_warm, "padded_pixels_per_line": round(pixels / max(n, 1))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lines", type=int, default=2000)
    p.add_argument("--height", type=int, default=120, help="crop height in pixels (IAM lines: ~120)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2, help="timed passes over the lines")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--both", action="store_true", help="time with and without augmentation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--records", default=None, help="reuse/keep the rendered record set here")
    a = p.parse_args(argv)

    import tensorflow as tf

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        records = Path(a.records) if a.records else Path(tmp) / "bench-lines"
        info = {}
        if not (records / "manifest.json").exists():
            t = time.perf_counter()
            info = build_records(records, a.lines, a.height, a.seed)
            info["render_seconds"] = round(time.perf_counter() - t, 1)
        modes = [True, False] if a.both else [not a.no_augment]
        for aug in modes:
            r = time_pipeline(records, batch_size=a.batch, augment=aug, epochs=a.epochs, seed=a.seed)
            print(json.dumps({"benchmark": "line_pipeline", "augment": aug, **r, "batch_size": a.batch,
                              "lines": a.lines, **info, "cpus": os.cpu_count(),
                              "loadavg_before": [round(v, 2) for v in load_before],
                              "loadavg_after": [round(v, 2) for v in os.getloadavg()],
                              "tensorflow": tf.__version__, "python": platform.python_version()}))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
