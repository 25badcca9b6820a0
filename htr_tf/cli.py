"""The ``htr`` command line.

Heavy imports (TensorFlow above all) happen inside the command that needs them, so
``htr --help`` is instant.  Errors caused by input are printed as one line and exit 1;
a subcommand that is not built yet says so and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

EXIT_ERROR = 1
EXIT_NOT_BUILT = 2

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
    ("lm", "build and tune n-gram language models"),
    ("bench", "run the benchmarks and write JSON"),
]


def _not_built(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        print(f"htr {name}: not built yet in this version of htr-tf", file=sys.stderr)
        return EXIT_NOT_BUILT

    return run


# -- the parser -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from htr_tf import __version__

    parser = argparse.ArgumentParser(
        prog="htr", description="Handwritten text recognition for full pages (TensorFlow/Keras).")
    parser.add_argument("--version", action="version", version=f"htr-tf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_ in COMMANDS:
        try:
            module = importlib.import_module(f"htr_tf.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"htr_tf.commands.{name}":
                raise
            q = sub.add_parser(name, help=help_ + " (not built yet)")
            q.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            q.set_defaults(func=_not_built(name))
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import os

    # TensorFlow's C++ start-up chatter (CUDA probing, CPU features) is noise for CLI users.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from htr_tf.errors import HTRError

    parser = build_parser()
    args = parser.parse_args(argv)
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
