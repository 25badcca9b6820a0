"""The ``htr`` command line.

Heavy imports (TensorFlow above all) happen inside the command that needs them, so
``htr --help`` is instant.  Errors caused by input are printed as one line and exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

EXIT_ERROR = 1

#: Subcommands in the order ``htr --help`` lists them.  Each is the module
#: ``htr_tf.commands.NAME`` with a ``register(subparsers)`` function; its top level imports
#: only the standard library, so building the parser stays instant.
COMMANDS: list[tuple[str, str]] = [
    ("data", "get and convert data: IAM, synthetic IAM-format forms, GW"),
    ("train", "train a model (recognizer, paragraph, lines) with keras.fit"),
    ("evaluate", "CER/WER and layout metrics on a record set"),
    ("export", "export SavedModels and the TF Serving model repository"),
    ("tflite", "convert a model to TFLite (float, float16, dynamic, int8)"),
    ("serve", "the embedded TF-Serving-compatible gRPC server"),
    ("ocr", "recognise pages or line images"),
    ("beam", "batch OCR of a collection on Apache Beam (Direct, Dataflow, Flink, Spark)"),
    ("lm", "build and tune n-gram language models"),
    ("bench", "run the benchmarks and write JSON"),
]


# -- the parser -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from htr_tf import __version__

    parser = argparse.ArgumentParser(
        prog="htr", description="Handwritten text recognition for full pages (TensorFlow/Keras).")
    parser.add_argument("--version", action="version", version=f"htr-tf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, _ in COMMANDS:
        importlib.import_module(f"htr_tf.commands.{name}").register(sub)
    return parser


#: Commands that run TensorFlow.  Its C++ logging (absl: CUDA probing, oneDNN notes, which
#: TF_CPP_MIN_LOG_LEVEL no longer silences in TF 2.21) is noise for CLI users: while these
#: commands run, file descriptor 2 goes to /dev/null and Python's ``sys.stderr`` (messages,
#: progress bars, warnings, tracebacks) to the real stderr.  HTR_TF_VERBOSE=1 keeps both.
_TF_COMMANDS = {"train", "evaluate", "export", "tflite", "serve", "ocr", "beam", "bench"}


def _silence_native_stderr() -> None:
    import io
    import os

    if os.environ.get("HTR_TF_VERBOSE"):
        return
    sys.stderr.flush()
    real = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    sys.stderr = io.TextIOWrapper(os.fdopen(real, "wb", buffering=0), encoding=sys.stderr.encoding or "utf-8",
                                  errors="backslashreplace", line_buffering=True, write_through=True)


def main(argv: Sequence[str] | None = None) -> int:
    import os

    # TensorFlow's C++ start-up chatter (CUDA probing, CPU features) is noise for CLI users.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from htr_tf.errors import HTRError

    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    # A command that hands options on (`htr beam` -> Beam's pipeline options) names the
    # attribute that receives them; everywhere else an unknown option is an error.
    if unknown:
        if not getattr(args, "pass_unknown_args", None):
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        setattr(args, args.pass_unknown_args, unknown)
    if args.command in _TF_COMMANDS and argv is None:
        _silence_native_stderr()
    try:
        return int(args.func(args) or 0)
    except HTRError as e:
        print(f"htr: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("htr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
