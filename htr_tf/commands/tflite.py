"""`htr tflite`: convert Keras bundles to TFLite files (builtin ops, optional quantisation).

``htr tflite recognizer|paragraph|lines --model M --out F.tflite --quantize MODE`` converts
one bundle; ``htr tflite all`` remakes the bundled TFLite files from the bundled Keras
models (``htr_tf/assets/models/tflite``); ``htr tflite info F.tflite`` prints the metadata
carried inside a file.  Only the standard library is imported at module level.
"""

from __future__ import annotations

import argparse
import json

KINDS = ("recognizer", "paragraph", "lines")
QUANTIZE_MODES = ("none", "float16", "dynamic", "int8")   # = htr_tf.tflite.QUANTIZE_MODES (tested)


def _size(path) -> str:
    import os

    return f"{os.path.getsize(path) / 1e6:.2f} MB"


def _convert(kind: str):
    def run(a: argparse.Namespace) -> int:
        from htr_tf.tflite import convert_bundle, read_metadata

        out = convert_bundle(kind, a.model, a.out, a.quantize, a.calibration, a.calibration_split,
                             a.calibration_limit)
        meta = read_metadata(out, kind)
        print(f"wrote {out} ({_size(out)}, {kind}, quantize {meta['tflite']['quantize']}; "
              f"metadata entry htr.json inside the file)")
        return 0

    return run


def _all(a: argparse.Namespace) -> int:
    from htr_tf.tflite import BUNDLED_QUANTIZE, convert_bundled

    quantize = {k: getattr(a, f"{k}_quantize") or BUNDLED_QUANTIZE[k] for k in KINDS}
    models = {k: getattr(a, k) for k in KINDS}
    kinds = a.only or KINDS
    out = convert_bundled(a.out_dir, quantize, models, a.calibration, a.calibration_split,
                          a.calibration_limit, kinds)
    for kind, path in out.items():
        print(f"wrote {path} ({_size(path)}, quantize {quantize[kind]})")
    return 0


def _info(a: argparse.Namespace) -> int:
    from htr_tf.tflite import read_metadata

    meta = read_metadata(a.file)
    if a.json:
        print(json.dumps(meta, indent=2, ensure_ascii=False))
        return 0
    t = meta["tflite"]
    print(f"{a.file}: {meta.get('kind')} model, quantize {t.get('quantize')}, converted {t.get('converted')} "
          f"with TensorFlow {t.get('tensorflow')} from {t.get('source')}")
    if "geometry" in meta:
        print(f"  geometry: {meta['geometry']}")
    if "charset" in meta:
        print(f"  charset: {len(meta['charset'].get('chars', ''))} characters")
    return 0


def _add_calibration(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calibration", metavar="RECORDS", default=None,
                   help="record set (htr data ...) whose inputs calibrate --quantize int8")
    p.add_argument("--calibration-split", default="train", help="split of --calibration to use (default train)")
    p.add_argument("--calibration-limit", type=int, default=64,
                   help="lines (recognizer) or pages (layout) used for calibration (default 64)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tflite", help="convert a model to TFLite (float, float16, dynamic, int8)",
        description="Convert Keras bundles to .tflite files that run on LiteRT (ai-edge-litert) with "
                    "builtin ops only. The bundle's htr.json (charset, geometry, configs) travels inside "
                    "each file as TFLite model metadata.")
    xs = p.add_subparsers(dest="tflite_command", metavar="MODEL", required=True)
    for kind in KINDS:
        q = xs.add_parser(kind, help=f"convert a {kind} bundle",
                          description=f"Convert a {kind} bundle directory to one .tflite file.")
        q.add_argument("--model", default=None, help=f"{kind} bundle directory (default: the bundled one)")
        q.add_argument("--out", required=True, help=".tflite file to write (replaced atomically)")
        q.add_argument("--quantize", choices=QUANTIZE_MODES, default="none",
                       help="none (float32), float16 (weights), dynamic (int8 weights), int8 "
                            "(weights and activations; needs --calibration)")
        _add_calibration(q)
        q.set_defaults(func=_convert(kind))

    q = xs.add_parser("all", help="remake the bundled TFLite files from the bundled Keras models",
                      description="Convert the recognizer, paragraph and lines bundles (default: the "
                                  "bundled Keras models) into OUT_DIR/KIND.tflite with the bundled "
                                  "quantisation (htr_tf.tflite.BUNDLED_QUANTIZE) unless overridden.")
    q.add_argument("--out-dir", default=None,
                   help="directory to write (default: htr_tf/assets/models/tflite, the bundled files)")
    for kind in KINDS:
        q.add_argument(f"--{kind}", default=None, help=f"{kind} bundle (default: the bundled one)")
        q.add_argument(f"--{kind}-quantize", choices=QUANTIZE_MODES, default=None,
                       help=f"quantisation of the {kind} file (default: the bundled choice)")
    q.add_argument("--only", nargs="+", choices=KINDS, default=None, help="convert only these kinds")
    _add_calibration(q)
    q.set_defaults(func=_all)

    q = xs.add_parser("info", help="print the metadata inside a .tflite file")
    q.add_argument("file", help=".tflite file")
    q.add_argument("--json", action="store_true", help="print the whole htr.json")
    q.set_defaults(func=_info)

