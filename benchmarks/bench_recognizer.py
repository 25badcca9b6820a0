"""Recogniser speed and accuracy benchmarks; prints JSON.

Speed (default): parameters, analytic FLOPs per line (multiply-adds x 2 of the convolutions,
recurrent layers and dense layers), inference lines/s at batch 1 and 32 and training lines/s
(one optimizer step, CTC, AdamW) at batch 16, on random lines of ``--width`` (1024: a typical
IAM line at height 64), for the default config or named candidates::

    python benchmarks/bench_recognizer.py [--candidates default,lean,...] [--width 1024]

Accuracy per millisecond (``--compare``): renders the same synthetic handwriting-font lines
(Brown sentences, four OFL handwriting fonts, random size/slant/noise) into a record set,
trains each candidate for the same number of steps with the real training code
(``train_recognizer``: tf.data pipeline, AdamW + cosine, CTC) and reports validation CER/WER
next to the candidate's inference ms/line::

    python benchmarks/bench_recognizer.py --compare --candidates default,lean --steps 600

Thread pools: TensorFlow's intra-op and inter-op pools are set to ``--threads`` (default:
all cores) before anything runs.  Candidates are timed in interleaved rounds (round-robin)
so load from other processes on a shared machine hits them alike; the JSON gives the median
and the best (least disturbed) round, and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from htr_tf.models.recognizer import RecognizerConfig  # noqa: E402

#: Candidate architectures compared for the bundled default (see training/recognizer.yaml).
CANDIDATES: dict[str, dict] = {
    "default": {},
    # DESIGN.md's measured baseline: 4 conv (16..96) + max pooling + Dense 192 + 2 BiLSTM(128)
    "pool": dict(conv_filters=(16, 32, 64, 96), downsample="pool", projection=192, rnn_units=128,
                 rnn_layers=2, rnn_type="lstm"),
    # the same with strided first convolutions instead of pooling (1/4 of the conv work)
    "stride": dict(conv_filters=(16, 32, 64, 96), downsample="stride", projection=192, rnn_units=128,
                   rnn_layers=2, rnn_type="lstm"),
    # strided and wider
    "stride_wide": dict(conv_filters=(24, 48, 96, 128), downsample="stride", projection=192, rnn_units=128,
                        rnn_layers=2, rnn_type="lstm"),
    # strided, two convolutions per block
    "stride_2conv": dict(conv_filters=(16, 32, 64, 96), downsample="stride", conv_per_block=2, projection=192,
                         rnn_units=128, rnn_layers=2, rnn_type="lstm"),
    "stride_gru": dict(conv_filters=(16, 32, 64, 96), downsample="stride", projection=192, rnn_units=128,
                       rnn_layers=2, rnn_type="gru"),
    "sep": dict(conv_filters=(16, 32, 64, 96), downsample="pool", separable_blocks=(1, 2, 3)),
    "tiny": RecognizerConfig.tiny().to_dict(),
    # the larger network grown from the bundle (training/recognizer-grow.yaml, htr_tf.models.grow)
    "grown": dict(conv_filters=(32, 64, 128, 192), downsample="stride", projection=256, rnn_units=192,
                  rnn_layers=2, rnn_type="lstm"),
}


def candidate(name: str) -> RecognizerConfig:
    if name not in CANDIDATES:
        raise SystemExit(f"unknown candidate {name!r}; valid: {sorted(CANDIDATES)}")
    return RecognizerConfig.from_dict({**RecognizerConfig().to_dict(), **CANDIDATES[name]})


# -- FLOPs ---------------------------------------------------------------------------------------
def analytic_flops(config: RecognizerConfig, num_classes: int, height: int, width: int) -> dict[str, int]:
    """Multiply-adds x 2 for one line of ``height x width`` (batch norm, pooling, activations
    and masking are left out: they are a few per element, not per weight)."""
    h, w, c = height, width, 1
    conv = 0
    for i, (f, (ph, pw)) in enumerate(zip(config.conv_filters, config.conv_pool)):
        for j in range(config.conv_per_block):
            k2 = config.conv_kernel ** 2
            if config.downsample == "stride" and j == 0:
                h, w = math.ceil(h / ph), math.ceil(w / pw)
            if i in config.separable_blocks:
                conv += h * w * (k2 * c + c * f)
            else:
                conv += h * w * k2 * c * f
            c = f
        if config.downsample != "stride":
            h, w = math.ceil(h / ph), math.ceil(w / pw)
    frames, feat = w, h * c
    dense = 0
    if config.projection:
        dense += frames * feat * config.projection
        feat = config.projection
    rnn = 0
    gates = 4 if config.rnn_type == "lstm" else 3
    for _ in range(config.rnn_layers):
        rnn += 2 * frames * gates * (feat + config.rnn_units) * config.rnn_units
        feat = 2 * config.rnn_units
    dense += frames * feat * num_classes
    return {"conv": 2 * conv, "rnn": 2 * rnn, "dense": 2 * dense, "total": 2 * (conv + rnn + dense),
            "frames": frames}


# -- speed ---------------------------------------------------------------------------------------
def measure_speeds(configs: dict[str, RecognizerConfig], num_classes: int = 80, height: int = 64,
                   width: int = 1024, infer_batches: tuple[int, ...] = (1, 32), train_batch: int = 16,
                   rounds: int = 7, train: bool = True, jit: bool = False) -> dict[str, dict[str, Any]]:
    """Time every candidate in interleaved rounds (round-robin), so that load from other
    processes on a shared machine hits all candidates alike; reports the median and the
    minimum (the least disturbed) time of each."""
    import keras
    import numpy as np
    import tensorflow as tf

    from htr_tf.models.recognizer import build_recognizer
    from htr_tf.train.recognizer import CTCTrainer

    rng = np.random.default_rng(0)
    results: dict[str, dict[str, Any]] = {}
    jobs: dict[tuple[str, str], tuple[Any, int]] = {}
    for name, config in configs.items():
        keras.utils.set_random_seed(0)
        model = build_recognizer(config, num_classes, height)
        results[name] = {"params": int(model.count_params()),
                         "flops_per_line": analytic_flops(config, num_classes, height, width)}

        @tf.function(input_signature=[tf.TensorSpec([None, height, None, 1], tf.float32),
                                      tf.TensorSpec([None], tf.int32)], reduce_retracing=True)
        def infer(image, widths, model=model):
            out = model({"image": image, "width": widths}, training=False)
            return out["log_probs"], out["lengths"]

        fns = {"": infer}
        if jit:   # the same function compiled by XLA (Recognizer.log_probs(jit=True), --backend-option jit=true)
            fns["_xla"] = tf.function(infer.python_function, input_signature=infer.input_signature,
                                      reduce_retracing=True, jit_compile=True)
        for b in infer_batches:
            x = tf.constant(rng.random((b, height, width, 1), dtype=np.float32))
            wv = tf.constant(np.full((b,), width, np.int32))
            for suffix, fn in fns.items():
                fn(x, wv)  # trace, compile and warm up
                jobs[(name, f"infer_batch{b}{suffix}")] = (lambda fn=fn, x=x, wv=wv: fn(x, wv)[0].numpy(), b)
        if train:
            trainer = CTCTrainer(model)
            trainer.compile(optimizer=keras.optimizers.AdamW(1e-3, clipnorm=5.0))
            xb = {"image": rng.random((train_batch, height, width, 1), dtype=np.float32),
                  "width": np.full((train_batch,), width, np.int32)}
            yb = rng.integers(1, num_classes, (train_batch, 40)).astype(np.int32)
            trainer.train_on_batch(xb, yb)
            jobs[(name, f"train_batch{train_batch}")] = (
                lambda trainer=trainer, xb=xb, yb=yb: trainer.train_on_batch(xb, yb), train_batch)
    for fn, _ in jobs.values():  # a second warm-up call each
        fn()
    times: dict[tuple[str, str], list[float]] = {k: [] for k in jobs}
    for _ in range(rounds):
        for key, (fn, _) in jobs.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    for (name, what), ts in times.items():
        n = jobs[(name, what)][1]
        med, best = statistics.median(ts), min(ts)
        results[name][what] = {"lines_per_s_median": n / med, "lines_per_s_best": n / best,
                               "ms_per_line_median": 1000 * med / n, "ms_per_line_best": 1000 * best / n,
                               "batch": n, "rounds": len(ts)}
    return results


# -- accuracy comparison data ----------------------------------------------------------------------
FONT_DIRS = ("/usr/share/fonts/truetype/breip", "/usr/share/fonts/truetype/kristi",
             "/usr/share/fonts/truetype/tomsontalks", "/usr/share/fonts/truetype/humor-sans")


def render_records(out: Path, train_lines: int, val_lines: int, seed: int = 0) -> Path:
    """Synthetic handwriting-font lines (Brown sentences) as a line record set; cached."""
    import cv2
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    from htr_tf.charset import Charset
    from htr_tf.data.records import LineExample, RecordSet, RecordSetWriter
    from htr_tf.data.text import load_sentences
    from htr_tf.fileio import encode_png

    if (out / "manifest.json").exists():
        rs = RecordSet(out)
        if rs.count("lines", "train") == train_lines and rs.count("lines", "validation") == val_lines:
            return out
    fonts = sorted(str(p) for d in FONT_DIRS for p in Path(d).glob("*.[ot]tf"))
    if not fonts:
        raise SystemExit(f"no fonts found in {FONT_DIRS}")
    cs = Charset()
    rng = np.random.default_rng(seed)
    words = " ".join(load_sentences()[:20000]).split()
    with RecordSetWriter(out, source="bench-fonts", charset=cs, per_shard=1000,
                         info={"fonts": fonts, "seed": seed}) as wr:
        for split, n in (("train", train_lines), ("validation", val_lines)):
            # validation uses its own stretch of text
            offset = 0 if split == "train" else len(words) // 2
            for i in range(n):
                k = int(rng.integers(2, 7))
                start = offset + int(rng.integers(0, len(words) // 2 - k))
                text = cs.normalize(" ".join(words[start:start + k]))
                text = "".join(c for c in text if c in cs)[:60].strip()
                if not text:
                    continue
                font_path = fonts[int(rng.integers(len(fonts)))]
                size = int(rng.integers(36, 56))
                font = ImageFont.truetype(font_path, size)
                x0, y0, x1, y1 = font.getbbox(text)
                pad = 10
                img = Image.new("L", (x1 - x0 + 2 * pad + 40, y1 - y0 + 2 * pad), 255)
                ImageDraw.Draw(img).text((pad - x0, pad - y0), text, font=font,
                                         fill=int(rng.integers(0, 70)),
                                         stroke_width=int(rng.integers(0, 2)), stroke_fill=int(rng.integers(0, 70)))
                a = np.asarray(img)
                shear = float(rng.uniform(-0.3, 0.3))
                h, w = a.shape
                M = np.float32([[1, shear, -shear * h / 2 if shear > 0 else -shear * h / 2], [0, 1, 0]])
                a = cv2.warpAffine(a, M, (w + int(abs(shear) * h), h), borderValue=255)
                a = np.clip(a.astype(np.float32) + rng.normal(0, 8, a.shape), 0, 255).astype(np.uint8)
                wr.add_line(split, LineExample(id=f"{split}-{i:05d}", image_png=encode_png(a), height=a.shape[0],
                                               width=a.shape[1], text=text, ids=cs.encode(text),
                                               form_id=f"{split}-{i // 10}", writer=Path(font_path).stem,
                                               source="bench-fonts"))
    return out


def compare(names: list[str], records: Path, steps: int, batch_size: int, work: Path,
            speed: dict[str, dict]) -> dict[str, Any]:
    from htr_tf.train.recognizer import DataSpec, TrainConfig, train_recognizer

    results: dict[str, Any] = {}
    for name in names:
        cfg = TrainConfig(model=candidate(name), data=(DataSpec(str(records)),), batch_size=batch_size,
                          epochs=max(1, steps // 100), steps_per_epoch=min(100, steps), learning_rate=2e-3,
                          warmup_steps=min(100, steps // 10), augment=False, seed=0)
        t0 = time.perf_counter()
        result = train_recognizer(cfg, work / name, verbose=0)
        wall = time.perf_counter() - t0
        best = min((r for r in result.history if "val_cer" in r), key=lambda r: r["val_cer"])
        sp = speed.get(name, {})
        results[name] = {
            "config": CANDIDATES[name], "params": result.params, "steps": steps, "batch_size": batch_size,
            "train_wall_s": wall, "best_epoch": best["epoch"], "val_cer": best["val_cer"], "val_wer": best["val_wer"],
            "cer_by_epoch": [round(r.get("val_cer", float("nan")), 4) for r in result.history],
            "train_lines_per_s_fit": statistics.median(r["lines_per_s"] for r in result.history[1:] or result.history),
            "infer_ms_per_line_b32_best": sp.get("infer_batch32", {}).get("ms_per_line_best"),
            "infer_ms_per_line_b1_best": sp.get("infer_batch1", {}).get("ms_per_line_best"),
        }
        print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
    return results


def machine() -> dict[str, Any]:
    import keras
    import tensorflow as tf

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "gpus": len(tf.config.list_physical_devices("GPU")),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "loadavg": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidates", default="default", help=f"comma-separated; from {sorted(CANDIDATES)}")
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds per measurement")
    p.add_argument("--no-train-speed", action="store_true")
    p.add_argument("--jit", action="store_true",
                   help="also time inference compiled by XLA (infer_batchN_xla; --backend-option jit=true)")
    p.add_argument("--compare", action="store_true", help="also train each candidate and report CER")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--train-lines", type=int, default=2000)
    p.add_argument("--val-lines", type=int, default=200)
    p.add_argument("--work", default="/tmp/htr-bench-recognizer")
    p.add_argument("--out", help="also write the JSON here")
    a = p.parse_args(argv)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    names = [n.strip() for n in a.candidates.split(",") if n.strip()]
    report: dict[str, Any] = {"benchmark": "recognizer", "machine": machine(), "width": a.width,
                              "height": a.height, "candidates": {}}
    speed = measure_speeds({n: candidate(n) for n in names}, height=a.height, width=a.width,
                           rounds=a.rounds, train=not a.no_train_speed, jit=a.jit)
    for name in names:
        report["candidates"][name] = {"config": candidate(name).to_dict(), **speed[name]}
    print(json.dumps(speed), file=sys.stderr, flush=True)
    if a.compare:
        work = Path(a.work)
        records = render_records(work / "records", a.train_lines, a.val_lines)
        report["compare"] = {"records": str(records), "train_lines": a.train_lines, "val_lines": a.val_lines,
                             "results": compare(names, records, a.steps, a.batch_size, work / "runs", speed)}
    report["loadavg_after"] = os.getloadavg()
    text = json.dumps(report, indent=2, default=list)
    print(text)
    if a.out:
        from htr_tf.fileio import atomic_write_text

        atomic_write_text(a.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
