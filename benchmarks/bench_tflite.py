"""TFLite per quantisation vs the Keras model and the SavedModel: size, latency, CER; prints JSON.

The recogniser (default: the bundled one) is converted with every mode of
``htr_tf.tflite.QUANTIZE_MODES`` (int8 calibrated on ``--calibration`` lines) and exported as
a SavedModel; then every variant recognises the same lines one at a time on ONE thread
(``tf.config.threading`` intra/inter-op 1; LiteRT ``num_threads=1``), greedy decoding:

* ``size_bytes``: the .tflite file (Keras: model.keras; SavedModel: the directory);
* ``ms_per_line_synth`` / ``_gw``: mean latency of one line (batch 1) after ``--warmup``
  lines; the variants take turns line by line, so a change of load hits all alike;
  ``speedup_vs_savedmodel`` (synthetic lines); ``cpu_ms_per_line_*`` and
  ``cpu_speedup_vs_savedmodel``: the same in process CPU time, which waiting for a busy
  CPU does not inflate (the fairer comparison on a shared machine);
* ``cer``: greedy CER (%) on ``--synth`` split ``--synth-split`` (``--limit`` lines) and on
  ``--gw`` split ``--gw-split`` (GW pages 278-279), and the change against Keras in points.
  Without ``--synth`` / ``--gw`` the records are made once into a cache folder
  (``benchmarks/bench_data.py``: synthetic forms; GW only where ``../shared/data/gw`` exists).

``--layout`` adds the paragraph and line models: size, ms and CPU ms per page (model call
only, ``--repeats`` passes, variants taking turns) and how far their boxes move against Keras
on ``--pages`` synthetic forms.  The CPU is shared: the JSON
records the load average before and after.

    python benchmarks/bench_tflite.py --limit 300
    python benchmarks/bench_tflite.py --modes none dynamic --layout --pages 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def load_lines(records: str, split: str, limit: int | None) -> tuple[list[np.ndarray], list[str]]:
    from htr_tf.data.records import RecordSet
    from htr_tf.fileio import decode_image

    crops, texts = [], []
    for ex in RecordSet(records).iter_lines(split):
        crops.append(decode_image(ex["image"], ex["id"]))
        texts.append(ex["text"])
        if limit and len(crops) >= limit:
            break
    return crops, texts


def cer_of(outputs, texts, charset) -> float:
    from htr_tf.decode import GreedyDecoder
    from htr_tf.metrics import score_lines

    hyps = [GreedyDecoder().decode(np.asarray(lp), np.asarray(n), charset)[0].text for lp, n in outputs]
    return 100.0 * float(score_lines(texts, hyps)["cer"])


def bench_recognizer(a: argparse.Namespace, work: Path) -> dict:
    import tensorflow as tf

    from htr_tf import tflite
    from htr_tf.export import export_recognizer, load_exported
    from htr_tf.bundle import bundled_model_path
    from htr_tf.recognize import KerasLineModel, line_batch

    rec = tflite.load_keras_bundle("recognizer", a.model)
    sets = {"synth": load_lines(a.synth, a.synth_split, a.limit)}
    if a.gw:
        sets["gw"] = load_lines(a.gw, a.gw_split, None)
    batches = {k: [line_batch([c], rec.geometry) for c in crops] for k, (crops, _) in sets.items()}
    result: dict = {"lines": {k: len(v[0]) for k, v in sets.items()}, "variants": {}}
    variants: dict = {}   # name -> (fn(images uint8 [1, H, W], widths [1]) -> (log_probs, lengths), info)

    keras_dir = Path(a.model) if a.model else bundled_model_path("recognizer")
    variants["keras"] = (KerasLineModel(rec).log_probs, {"size_bytes": (keras_dir / "model.keras").stat().st_size})
    sm_dir = export_recognizer(rec, work / "savedmodel" / "1")
    sig = load_exported(sm_dir).signatures["recognize"]

    def saved(im, w):
        out = sig(images=tf.constant(im), widths=tf.constant(w, tf.int32))
        return out["log_probs"].numpy(), out["lengths"].numpy()

    variants["savedmodel"] = (saved, {"size_bytes": _dir_size(sm_dir)})
    for mode in a.modes:
        path = work / f"recognizer-{mode}.tflite"
        t = time.perf_counter()
        cal = a.calibration if mode == "int8" else None
        tflite.convert_bundle("recognizer", a.model, path, mode, cal, a.calibration_split, a.calibration_limit)
        conv_s = time.perf_counter() - t
        print(f"[bench_tflite] converted {mode} in {conv_s:.0f} s", file=sys.stderr, flush=True)
        r = tflite.TFLiteRecognizer(path, num_threads=1)
        variants[f"tflite-{mode}"] = (r.log_probs, {"size_bytes": path.stat().st_size, "convert_s": round(conv_s, 1),
                                                    "width_bucket": r.width_bucket,
                                                    "calibration_lines": a.calibration_limit if mode == "int8" else 0})
    for name, (fn, info) in variants.items():           # warm-up: tracing, allocation
        for images, widths in batches["synth"][: a.warmup]:
            fn(images, widths)
        result["variants"][name] = dict(info)
    # round robin: each line runs on every variant in turn, so a change of load hits all alike
    for key in sets:
        outs: dict = {name: [] for name in variants}
        secs = dict.fromkeys(variants, 0.0)
        cpu = dict.fromkeys(variants, 0.0)
        for images, widths in batches[key]:
            for name, (fn, _) in variants.items():
                t, c = time.perf_counter(), time.process_time()
                outs[name].append(fn(images, widths))
                secs[name] += time.perf_counter() - t
                cpu[name] += time.process_time() - c
        for name in variants:
            row = result["variants"][name]
            row[f"cer_{key}"] = round(cer_of(outs[name], sets[key][1], rec.charset), 3)
            row[f"ms_per_line_{key}"] = round(1000 * secs[name] / max(len(batches[key]), 1), 2)
            row[f"cpu_ms_per_line_{key}"] = round(1000 * cpu[name] / max(len(batches[key]), 1), 2)
        print(f"[bench_tflite] {key}: {json.dumps(result['variants'])}", file=sys.stderr, flush=True)
    base, k = result["variants"]["savedmodel"], result["variants"]["keras"]
    ref_size = result["variants"].get("tflite-none", {}).get("size_bytes")
    for name, row in result["variants"].items():
        row["speedup_vs_savedmodel"] = round(base["ms_per_line_synth"] / row["ms_per_line_synth"], 2)
        row["cpu_speedup_vs_savedmodel"] = round(base["cpu_ms_per_line_synth"] / row["cpu_ms_per_line_synth"], 2)
        for key in sets:
            row[f"cer_{key}_delta_vs_keras"] = round(row[f"cer_{key}"] - k[f"cer_{key}"], 3)
        if name.startswith("tflite") and ref_size:
            row["size_vs_float"] = round(row["size_bytes"] / ref_size, 3)
    return result


def bench_layout(a: argparse.Namespace, work: Path) -> dict:
    from htr_tf import tflite
    from htr_tf.data.records import RecordSet
    from htr_tf.fileio import decode_image

    pages = []
    for ex in RecordSet(a.synth).iter_forms(a.synth_split):
        pages.append(decode_image(ex["image"], ex["id"]))
        if len(pages) >= a.pages:
            break
    par_k = tflite.load_keras_bundle("paragraph", None)
    det_k = tflite.load_keras_bundle("lines", None)
    # Keras reference: areas, line boxes, and the model inputs (timed model calls only)
    areas = [par_k.detect(p)[0] for p in pages]
    par_in = [par_k.preprocess(p)[0][None] for p in pages]
    det_in = [det_k.preprocess(p, a_)[0] for p, a_ in zip(pages, areas)]
    ref_lines = [det_k.detect(p, a_)[0] for p, a_ in zip(pages, areas)]

    out: dict = {"pages": len(pages), "repeats": a.repeats, "paragraph": {}, "lines": {}}
    assets = Path(tflite.__file__).parent / "assets" / "models"
    runners = {"paragraph": {"keras": par_k}, "lines": {"keras": det_k}}
    for kind in ("paragraph", "lines"):
        out[kind]["keras"] = {"size_bytes": (assets / kind / "model.keras").stat().st_size}
        for mode in a.modes:
            path = work / f"{kind}-{mode}.tflite"
            cal = a.calibration if mode == "int8" else None
            tflite.convert_bundle(kind, None, path, mode, cal, a.calibration_split, min(a.calibration_limit, 32))
            m = (tflite.TFLiteParagraph if kind == "paragraph" else tflite.TFLiteLines).open(path, num_threads=1)
            runners[kind][mode] = m
            row: dict = {"size_bytes": path.stat().st_size}
            if kind == "paragraph":
                boxes = [m.detect(p)[0] for p in pages]
                row["mean_max_box_shift_px"] = round(float(np.mean([np.abs(b - r).max()
                                                                     for b, r in zip(boxes, areas)])), 2)
            else:
                got = [m.detect(p, a_)[0] for p, a_ in zip(pages, areas)]
                same = [len(g) == len(r) for g, r in zip(got, ref_lines)]
                shift = [float(np.abs(g - r).max()) for g, r, s in zip(got, ref_lines, same) if s and len(r)]
                row["same_line_count"] = round(float(np.mean(same)), 3)
                row["median_max_box_shift_px"] = round(float(np.median(shift)), 2) if shift else None
            out[kind][mode] = row
    # model calls only (the numpy pre/post-processing is shared); variants take turns page by page
    for kind, inputs in (("paragraph", par_in), ("lines", det_in)):
        call = {name: (m.masks if kind == "paragraph" else m.mask) for name, m in runners[kind].items()}
        for fn in call.values():
            fn(inputs[0])
        wall = dict.fromkeys(call, 0.0)
        cpu = dict.fromkeys(call, 0.0)
        for _ in range(a.repeats):
            for x in inputs:
                for name, fn in call.items():
                    t, c = time.perf_counter(), time.process_time()
                    fn(x)
                    wall[name] += time.perf_counter() - t
                    cpu[name] += time.process_time() - c
        n = a.repeats * len(inputs)
        for name in call:
            out[kind][name]["ms_per_page"] = round(1000 * wall[name] / n, 2)
            out[kind][name]["cpu_ms_per_page"] = round(1000 * cpu[name] / n, 2)
        print(f"[bench_tflite] {kind}: {json.dumps(out[kind])}", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="recognizer bundle (default: the bundled one)")
    p.add_argument("--synth", default=None,
                   help="line records of synthetic forms (default: 400 forms of `htr data synth --seed 1` "
                        "made once into the cache, benchmarks/bench_data.py)")
    p.add_argument("--synth-split", default="test")
    p.add_argument("--limit", type=int, default=300, help="synthetic lines (default 300)")
    p.add_argument("--gw", default=None,
                   help="GW line records (default: made into the cache from ../shared/data/gw when present, "
                        "else no GW column)")
    p.add_argument("--gw-split", default="validation")
    p.add_argument("--modes", nargs="+", default=["none", "float16", "dynamic", "int8"])
    p.add_argument("--calibration", default=None, help="records for int8 calibration (default: --synth's)")
    p.add_argument("--calibration-split", default="train")
    p.add_argument("--calibration-limit", type=int, default=64)
    p.add_argument("--warmup", type=int, default=20, help="lines run before timing")
    p.add_argument("--layout", action="store_true", help="also the paragraph and line models")
    p.add_argument("--no-recognizer", action="store_true", help="skip the recogniser (with --layout)")
    p.add_argument("--pages", type=int, default=10, help="synthetic forms for --layout")
    p.add_argument("--repeats", type=int, default=3, help="passes over the pages when timing --layout")
    p.add_argument("--keep", default=None, help="keep the converted files in this directory")
    p.add_argument("--json-out", default=None, help="also write the JSON here")
    a = p.parse_args(argv)
    import bench_data

    a.synth = a.synth or str(bench_data.synth_records())
    if not a.no_recognizer and not a.gw:
        gw = bench_data.gw_records()
        a.gw = str(gw) if gw else None
    a.calibration = a.calibration or a.synth

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-tflite-") as tmp:
        work = Path(a.keep) if a.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        report: dict = {"benchmark": "tflite", "threads": 1}
        if not a.no_recognizer:
            report["recognizer"] = bench_recognizer(a, work)
        if a.layout:
            report["layout"] = bench_layout(a, work)
    import ai_edge_litert

    report["machine"] = {"cpu_count": os.cpu_count(), "machine": platform.machine(),
                         "tensorflow": tf.__version__,
                         "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"),
                         "loadavg_before": [round(x, 2) for x in load_before],
                         "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                         "wall_s": round(time.perf_counter() - t0, 1)}
    text = json.dumps(report, indent=2)
    print(text)
    if a.json_out:
        from htr_tf.fileio import atomic_write_text

        atomic_write_text(a.json_out, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
