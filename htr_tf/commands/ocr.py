"""`htr ocr`: recognise images, at the level the user names.

``--level line``: every image is one text line; one line of text per image on stdout (or
one JSON object per image with ``--format json``).  An image that cannot be read is
reported on stderr naming the file, the others are still recognised, and the exit status
is 1.  ``--level page`` (the default) runs the full page pipeline: not built yet.

Each level is a ``_ocr_<level>`` handler over the same options, so adding the page level
means adding its handler to ``_LEVELS``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable

#: Images recognised per chunk: results are printed chunk by chunk.
_CHUNK = 256


# -- shared by the commands that decode (ocr, evaluate) -----------------------------------------
def add_decoder_arguments(q: argparse.ArgumentParser) -> None:
    """``--decoder`` and its options (names are checked against the decoder registry)."""
    q.add_argument("--decoder", default="greedy", metavar="NAME",
                   help="CTC decoder: greedy (default) or beam; an unknown name lists the valid ones")
    q.add_argument("--beam-width", type=int, default=None, help="beam width of the beam decoder (default 10)")


def decoder_from_args(a: argparse.Namespace) -> Any:
    from htr_tf.decode import get_decoder

    opts: dict[str, Any] = {}
    if getattr(a, "beam_width", None) is not None:
        opts["beam_width"] = a.beam_width
    return get_decoder(a.decoder, **opts)


def default_model_path(kind: str) -> Path:
    """Where the bundled ``kind`` model lives (``htr_tf.models.default_model_path`` when present)."""
    try:
        from htr_tf.models import default_model_path as bundled
    except ImportError:
        import htr_tf

        return Path(htr_tf.__file__).resolve().parent / "assets" / "models" / kind
    return Path(bundled(kind))


def load_recognizer(model: str | None) -> Any:
    """The recogniser bundle at ``model``, or the bundled one; ModelError saying what to do."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from htr_tf.errors import ModelError
    from htr_tf.models import Recognizer

    if model is None:
        path = default_model_path("recognizer")
        if not (path / "htr.json").exists():
            raise ModelError(f"no bundled recognizer model in this installation ({path}); "
                             f"pass --model BUNDLE (a directory written by `htr train recognizer`)")
        return Recognizer.load(path)
    return Recognizer.load(model)


# -- levels --------------------------------------------------------------------------------------
def _ocr_page(a: argparse.Namespace) -> int:
    from htr_tf.cli import EXIT_NOT_BUILT

    print("htr ocr --level page: not built yet in this version of htr-tf "
          "(use --level line for images of single text lines)", file=sys.stderr)
    return EXIT_NOT_BUILT


def _ocr_line(a: argparse.Namespace) -> int:
    import json

    from htr_tf.errors import DataError
    from htr_tf.evaluate import recognize_lines
    from htr_tf.fileio import read_image
    from htr_tf.results import LineResult, line_frame_width

    recognizer = load_recognizer(a.model)
    decoder = decoder_from_args(a)
    geometry = recognizer.geometry
    downsample = recognizer.config.width_downsample()
    failed = 0
    for start in range(0, len(a.images), _CHUNK):
        names, crops = [], []
        for name in a.images[start: start + _CHUNK]:
            try:
                crops.append(read_image(name))
                names.append(name)
            except DataError as e:
                print(f"htr: error: {e}", file=sys.stderr)
                failed += 1
        if not crops:
            continue
        for name, crop, line in zip(names, crops, recognize_lines(recognizer, crops, decoder, a.batch_size)):
            if a.format == "text":
                print(line.text)
                continue
            h, w = crop.shape[:2]
            result = LineResult.from_decoded(
                line, box=(0, 0, w, h), frame_width=line_frame_width(w, geometry.target_width(h, w), downsample),
                extra={"image": name, "decoder": decoder.name})
            print(json.dumps(result.to_dict(), ensure_ascii=False))
        sys.stdout.flush()
    if failed:
        print(f"htr: {failed} of {len(a.images)} image(s) could not be read", file=sys.stderr)
        return 1
    return 0


_LEVELS: dict[str, Callable[[argparse.Namespace], int]] = {"page": _ocr_page, "line": _ocr_line}


def _ocr(a: argparse.Namespace) -> int:
    if a.batch_size < 1:
        from htr_tf.errors import ConfigError

        raise ConfigError(f"--batch-size must be >= 1, got {a.batch_size}")
    return _LEVELS[a.level](a)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ocr", help="recognise pages or line images",
        description="Recognise images. With --level line each image is one text line: one line of "
                    "text per image on stdout (JSON objects with confidences and boxes with "
                    "--format json). Unreadable images are reported on stderr and the exit status is 1.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, TIFF, BMP)")
    p.add_argument("--level", choices=list(_LEVELS), default="page",
                   help="page: full pages (not built yet); line: each image is one text line")
    p.add_argument("--model", default=None,
                   help="recognizer bundle directory (default: the bundled model)")
    p.add_argument("--format", choices=["text", "json"], default="text",
                   help="text: one line per image; json: one JSON object per image")
    add_decoder_arguments(p)
    p.add_argument("--batch-size", type=int, default=16, help="lines per recogniser batch")
    p.set_defaults(func=_ocr)
