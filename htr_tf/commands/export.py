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


def _export_repository(a: argparse.Namespace) -> int:
    from htr_tf.serving.repository import MODEL_KINDS, check_repository, write_repository

    models = a.models.split(",") if a.models else list(MODEL_KINDS)
    written = write_repository(a.out, a.version, a.recognizer, a.paragraph, a.lines, models, log=print)
    check_repository(a.out)
    print(f"repository {a.out}: " + ", ".join(f"{k} version {v}" for k, v in written.items())
          + "; serve it with `htr serve --repository DIR` or TF Serving (Dockerfile.serving)")
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

    r = xs.add_parser(
        "repository", help="export every model into a TF Serving model repository",
        description="Write NAME/VERSION/ SavedModels (recognizer, paragraph, lines) in TF Serving's layout "
                    "plus models.config, batching.config and monitoring.config (kept when present). "
                    "See serving/README.md.")
    r.add_argument("--out", required=True, help="repository directory (created or added to)")
    r.add_argument("--version", type=int, help="version number (default: one more than the highest present)")
    for kind in ("recognizer", "paragraph", "lines"):
        r.add_argument(f"--{kind}", help=f"{kind} bundle directory (default: the bundled model)")
    r.add_argument("--models", help="comma-separated subset to export (default: recognizer,paragraph,lines)")
    r.set_defaults(func=_export_repository)
