"""`htr export`: SavedModels with named serving signatures (``recognizer`` for now)."""

from __future__ import annotations

import argparse


def _export_recognizer(a: argparse.Namespace) -> int:
    from htr_tf.commands.ocr import load_recognizer
    from htr_tf.export import SIGNATURES, export_recognizer

    recognizer = load_recognizer(a.model)
    out = export_recognizer(recognizer, a.out)
    print(f"exported {out} (signatures: {', '.join(SIGNATURES)}; charset and geometry in "
          f"assets/htr.json and the metadata signature)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export SavedModels and the TF Serving model repository")
    xs = p.add_subparsers(dest="export_command", metavar="MODEL", required=True)
    from htr_tf.commands.layout_args import add_export_parsers

    add_export_parsers(xs)  # paragraph, lines

    q = xs.add_parser(
        "recognizer", help="export a line recogniser bundle as a SavedModel",
        description="Write a SavedModel with the signatures recognize (uint8 images + widths, "
                    "also serving_default), recognize_bytes (encoded images) and metadata. The "
                    "directory is written beside --out and renamed into place.")
    q.add_argument("--model", required=True, help="recognizer bundle directory")
    q.add_argument("--out", required=True, help="SavedModel directory to write (replaced if present)")
    q.set_defaults(func=_export_recognizer)
