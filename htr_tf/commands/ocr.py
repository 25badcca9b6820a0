"""`htr ocr`: recognise images, at the level the user names.

``--level line``: every image is one text line; one line of text per image on stdout (or
one JSON object per image with ``--format json``).  An image that cannot be read is
reported on stderr naming the file, the others are still recognised, and the exit status
is 1.  ``--level page`` (the default) runs the full page pipeline
(:class:`htr_tf.pipeline.Pipeline`): text, JSON or PAGE-XML per page, on stdout or one file
per page in ``--out DIR``, and overlay pictures with ``--overlay``.  At both levels the
networks run in this process, on LiteRT (``--backend tflite`` or ``--model FILE.tflite``) or
on a model server (``--server HOST:PORT``), and lines are read by
:func:`htr_tf.recognize.recognize_crops`.  Without ``--decoder`` the best installed decoder
is used (beam+lm with the lm extra, greedy without; JSON output names it).

Each level is a ``_ocr_<level>`` handler over the same options (``_LEVELS``).
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
#: Help of ``--decoder-option`` (shared by ocr, evaluate recognizer and evaluate pipeline).
DECODER_OPTION_HELP = ("a decoder option (repeatable; int/float/bool/none/str values), e.g. lm_weight=1.5: "
                       "overrides the model's tuned setting (`htr lm tune --save`); an unknown key "
                       "lists the decoder's options")


def add_decoder_arguments(q: argparse.ArgumentParser, best_by_default: bool = False) -> None:
    """``--decoder`` and its options (names are checked against the decoder registry).

    ``best_by_default``: no ``--decoder`` means the best decoder installed
    (:func:`htr_tf.decode.default_decoder`, resolved by :func:`resolve_decoder`), else greedy.
    """
    from htr_tf.decode.ctc import BEST_DECODER, default_decoder

    others = "beam, beam+lm (word 4-gram, needs the lm extra), beam+charlm, lexicon, beam+lm+lexicon"
    if best_by_default:
        default = (f"default: the best installed, {BEST_DECODER} (word 4-gram beam search) with the lm "
                   f"extra, greedy without it; here: {default_decoder()}")
        q.add_argument("--decoder", default=None, metavar="NAME",
                       help=f"CTC decoder ({default}; JSON output names the one used): greedy, {others}; "
                            f"an unknown name lists the valid ones")
    else:
        q.add_argument("--decoder", default="greedy", metavar="NAME",
                       help=f"CTC decoder: greedy (default), {others}; an unknown name lists the valid ones")
    q.add_argument("--beam-width", type=int, default=None,
                   help="beam width of the beam decoders (default: the model's tuned one, else the decoder's)")
    q.add_argument("--decoder-option", action="append", default=[], metavar="KEY=VALUE", help=DECODER_OPTION_HELP)


def decoder_options_from_args(a: argparse.Namespace) -> dict[str, Any]:
    """The decoder options the user gave (``--decoder-option``, ``--beam-width``): they override
    the model's tuned settings."""
    from htr_tf.decode import parse_decoder_options

    opts = parse_decoder_options(getattr(a, "decoder_option", None))
    if getattr(a, "beam_width", None) is not None:
        opts["beam_width"] = a.beam_width
    return opts


def resolve_decoder(a: argparse.Namespace) -> str:
    """``a.decoder``, the best installed decoder when none was named (it is set on ``a``)."""
    if getattr(a, "decoder", None) is None:
        from htr_tf.decode.ctc import default_decoder

        a.decoder = default_decoder()
    return a.decoder


def decoder_from_args(a: argparse.Namespace, decoding: dict[str, Any] | None = None) -> Any:
    """The decoder the options name, starting from ``decoding`` (the model's tuned settings)."""
    from htr_tf.decode import build_decoder

    return build_decoder(resolve_decoder(a), decoding, decoder_options_from_args(a))


def add_variants_argument(q: argparse.ArgumentParser) -> None:
    """``--variants``: read each line in several views and keep the text they agree on most."""
    from htr_tf.readings import DEFAULT_VARIANTS, VARIANTS

    q.add_argument("--variants", default=None, metavar="NAMES",
                   help=f"read each line in several views and keep the text they agree on most "
                        f"(slower: one pass of the recogniser per view): 'default' "
                        f"({','.join(DEFAULT_VARIANTS)}), comma-separated names of "
                        f"{', '.join(VARIANTS)}, or 'none' for one reading (default: the views the "
                        f"recogniser's htr.json names under decoding.variants, one reading if none)")


def variants_from_args(a: argparse.Namespace) -> tuple[str, ...] | None:
    """The views ``--variants`` names (checked; () for one reading), None when it is not given:
    then the recogniser's ``decoding`` section says."""
    from htr_tf.readings import parse_variants

    spec = getattr(a, "variants", None)
    return None if spec is None else parse_variants(spec)


def add_line_crop_argument(q: argparse.ArgumentParser) -> None:
    """``--line-crop`` (:attr:`PipelineOptions.line_crop`) and the confidence floors
    (:func:`confidence_options`): how the page pipeline cuts detected lines and which readings it keeps."""
    from htr_tf.pipeline import LINE_CROPS

    q.add_argument("--line-crop", choices=list(LINE_CROPS), default="polygon",
                   help="how detected lines are cut for the recogniser: polygon (default; the line's "
                        "outline, ink outside it painted out, as `htr data xml-prepare` cuts training "
                        "lines), box (padded box, neighbours' ink painted out by a heuristic) or apart "
                        "(the box grown to hold the outline, only ink inside other lines' outlines "
                        "painted out)")
    q.add_argument("--trim-margins", action="store_true",
                   help="trim the detected lines' blank margins before reading them, as line images "
                        "handed in are (off by default: read worse on the validation pages)")
    q.add_argument("--level-lines", action="store_true",
                   help="level skewed detected lines before reading them when the recogniser was trained "
                        "on levelled lines (its geometry's deskew; off by default: read worse on the "
                        "validation pages)")
    q.add_argument("--min-line-confidence", type=float, default=None, metavar="C",
                   help="leave out lines the recogniser reads with a confidence below C (0-1; default 0: "
                        "keep all): detections on small print or smudges read as garbage")
    q.add_argument("--min-relative-confidence", type=float, default=None, metavar="R",
                   help="leave out lines read with a confidence below R x the page's median line "
                        "confidence (pages of 3+ lines; default 0.75; 0: keep all)")


def add_printed_arguments(q: argparse.ArgumentParser) -> None:
    """``--include-printed`` / ``--no-printed`` / ``--outside-as-printed``: text outside the handwritten
    area (:attr:`PipelineOptions.find_printed`, :attr:`PipelineOptions.read_printed`,
    :attr:`PipelineOptions.classify_outside`)."""
    g = q.add_mutually_exclusive_group()
    g.add_argument("--include-printed", action="store_true",
                   help="recognise printed text too (found outside the handwritten area, e.g. a form's "
                        "header and prompt): its lines get text and join the page text; by default printed "
                        "regions are reported (JSON, PAGE, ALTO, overlay) but not read")
    g.add_argument("--no-printed", action="store_true",
                   help="do not look for text outside the handwritten area (saves the time; handwriting "
                        "outside it, such as a date line or a signature, is then not read either)")
    q.add_argument("--outside-as-printed", action="store_true",
                   help="report every line found outside the handwritten area as printed, without asking the "
                        "line detector's printed-or-handwritten classifier (htr_tf.line_type)")


def confidence_options(a: argparse.Namespace) -> dict[str, float | bool]:
    """The :class:`PipelineOptions` confidence floors the user gave (``--min-line-confidence``,
    ``--min-relative-confidence``), ``--trim-margins`` and ``--level-lines``; the others keep
    their defaults."""
    names = ("min_line_confidence", "min_relative_confidence")
    out = {n: getattr(a, n) for n in names if getattr(a, n, None) is not None}
    if getattr(a, "trim_margins", False):
        out["trim_margins"] = True
    if getattr(a, "level_lines", False):
        out["level_lines"] = True
    return out


def printed_options(a: argparse.Namespace) -> dict[str, bool]:
    """The :class:`PipelineOptions` fields :func:`add_printed_arguments`' options set."""
    read = bool(getattr(a, "include_printed", False))
    return {"find_printed": read or not getattr(a, "no_printed", False), "read_printed": read,
            "classify_outside": not getattr(a, "outside_as_printed", False)}


def load_recognizer(model: str | None) -> Any:
    """The Keras recogniser bundle at ``model``, or the bundled one; ModelError saying what to do."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from htr_tf.bundle import require_bundled
    from htr_tf.models import Recognizer

    return Recognizer.load(model if model is not None else require_bundled("recognizer"))


# -- where the networks run ------------------------------------------------------------------------
def backend_from_args(a: argparse.Namespace, recognizer_only: bool = False) -> Any:
    """The backend the options name: ``--server`` (gRPC), ``--backend``, or the kind of ``--model``
    (a ``.tflite`` file runs on LiteRT, a bundle directory in process).  ``recognizer_only``
    loads no layout model (line images)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from htr_tf.errors import ConfigError
    from htr_tf.pipeline import make_backend

    find_area = not getattr(a, "no_area", False)
    layout = {"paragraph": getattr(a, "paragraph_model", None), "lines": getattr(a, "lines_model", None)}
    if recognizer_only:
        given = [f"--{k}-model" for k, v in layout.items() if v]
        if given:
            raise ConfigError(f"{', '.join(given)} applies to pages, not to --level line")
        layout = {}
    if a.server:
        if a.backend not in (None, "grpc"):
            raise ConfigError(f"--server runs the models on a model server: it cannot go with --backend {a.backend}")
        if a.model or any(layout.values()):
            raise ConfigError("--server runs the models the server has: --model, --paragraph-model and "
                              "--lines-model do not apply")
        return make_backend("grpc", address=a.server, use_paragraph=find_area, recognizer_only=recognizer_only)
    name = a.backend or ("tflite" if str(a.model or "").lower().endswith(".tflite") else "local")
    models = {"recognizer": a.model, **layout}
    extra = {}
    if getattr(a, "jit", False):
        if name != "local":
            raise ConfigError(f"--jit compiles the Keras recogniser with XLA: it needs the local backend, not {name}")
        extra["jit"] = True
    return make_backend(name, use_paragraph=find_area, recognizer_only=recognizer_only,
                        **{k: v for k, v in models.items() if v is not None}, **extra)


# -- levels --------------------------------------------------------------------------------------
def pipeline_from_args(a: argparse.Namespace) -> Any:
    """The page :class:`~htr_tf.pipeline.Pipeline` the options name (backend, models, decoder)."""
    from htr_tf.pipeline import Pipeline, PipelineOptions

    options = PipelineOptions(batch_size=a.batch_size, find_area=not a.no_area,
                              line_crop=getattr(a, "line_crop", "polygon"), **confidence_options(a),
                              **printed_options(a), variants=variants_from_args(a))
    return Pipeline(backend_from_args(a), resolve_decoder(a), options, decoder_options_from_args(a))


def _page_output_path(out_dir: Path, image: str, suffix: str) -> Path:
    return out_dir / (Path(image).stem + suffix)


def _ocr_page(a: argparse.Namespace) -> int:
    if a.out:
        from htr_tf.commands.batch_args import run_ocr_batch

        return run_ocr_batch(a)
    from htr_tf.errors import ConfigError, DataError
    from htr_tf.fileio import read_image
    from htr_tf.outputs import FORMAT_REGISTRY, render, write_overlay

    several = len(a.images) > 1
    if FORMAT_REGISTRY[a.format].document and several and not a.out:
        raise ConfigError(f"--format {a.format} with several pages needs --out DIR (one XML file per page)")
    overlay_dir = None
    if a.overlay and several:
        overlay_dir = Path(a.overlay)
        if overlay_dir.suffix.lower() == ".png":
            raise ConfigError("--overlay with several pages names a directory (one PNG per page), "
                              f"not a file: {a.overlay}")
    stems = [Path(i).stem for i in a.images]
    if overlay_dir and len(set(stems)) != len(stems):
        raise ConfigError("two pages have the same file name stem: their outputs would overwrite each other")
    pipeline = pipeline_from_args(a)
    failed = printed = 0
    for image in a.images:
        try:
            gray = read_image(image)
            result = pipeline.run(gray, id=image)
        except DataError as e:
            print(f"htr: error: {e}", file=sys.stderr)
            failed += 1
            continue
        for w in result.warnings:
            print(f"htr: {image}: {w}", file=sys.stderr)
        text = render(result, a.format, image_filename=image)
        if a.format == "json":
            sys.stdout.write(text.rstrip("\n") + "\n")
        else:
            if several and a.format == "text":
                sys.stdout.write(("\n" if printed else "") + f"==> {image} <==\n")
            sys.stdout.write(text)
            printed += 1
        if a.overlay:
            target = _page_output_path(overlay_dir, image, ".png") if overlay_dir else Path(a.overlay)
            write_overlay(target, gray, result)
        sys.stdout.flush()
    if failed:
        print(f"htr: {failed} of {len(a.images)} page(s) could not be read", file=sys.stderr)
        return 1
    return 0


def _ocr_line(a: argparse.Namespace) -> int:
    import json

    from htr_tf.errors import ConfigError, DataError
    from htr_tf.fileio import read_image
    from htr_tf.outputs import FORMAT_REGISTRY
    from htr_tf.recognize import recognize_crops
    from htr_tf.results import LineResult, line_frame_width

    for flag, value in ((f"--format {a.format}", FORMAT_REGISTRY[a.format].document), ("--out", a.out),
                        ("--overlay", a.overlay), ("--no-area", a.no_area)):
        if value:
            raise ConfigError(f"{flag} applies to pages, not to --level line")
    model = backend_from_args(a, recognizer_only=True)      # in process, LiteRT or a model server
    decoder = decoder_from_args(a, model.decoding)
    views = variants_from_args(a)
    geometry, downsample = model.geometry, model.width_downsample
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
        lines = recognize_crops(model, crops, decoder, a.batch_size, variants=views)
        for name, crop, line in zip(names, crops, lines):
            if a.format == "text":
                print(line.text)
                continue
            h, w = crop.shape[:2]
            result = LineResult.from_decoded(
                line, box=(0, 0, w, h), frame_width=line_frame_width(w, geometry.target_width(h, w), downsample),
                extra={"image": name, "decoder": decoder.name, "backend": model.name})
            print(json.dumps(result.to_dict(), ensure_ascii=False))
        sys.stdout.flush()
    getattr(decoder, "close", lambda: None)()
    if failed:
        print(f"htr: {failed} of {len(a.images)} image(s) could not be read", file=sys.stderr)
        return 1
    return 0


_LEVELS: dict[str, Callable[[argparse.Namespace], int]] = {"page": _ocr_page, "line": _ocr_line}


def _ocr(a: argparse.Namespace) -> int:
    if a.batch_size < 1:
        from htr_tf.errors import ConfigError

        raise ConfigError(f"--batch-size must be >= 1, got {a.batch_size}")
    resolve_decoder(a)
    if not a.out:
        from htr_tf.commands.batch_args import expand_inputs

        if a.workers != 1 or a.overwrite:
            from htr_tf.errors import ConfigError

            raise ConfigError("--workers and --overwrite go with --out DIR (one file per page)")
        a.images = [t.source for t in expand_inputs(a.images)]
    return _LEVELS[a.level](a)


def register(sub: argparse._SubParsersAction) -> None:
    from htr_tf.commands.batch_args import INPUTS_HELP, add_batch_arguments

    p = sub.add_parser(
        "ocr", help="recognise pages or line images",
        description="Recognise images. By default each image is a page: the handwritten area is "
                    "found, its text lines detected and recognised, and the page's text printed "
                    "(--format json|page-xml for boxes and confidences, --overlay for a picture). "
                    "With --level line each image is one text line: one line of text per image. "
                    "Unreadable images are reported on stderr, the others still recognised, and the "
                    "exit status is 1.")
    p.add_argument("images", nargs="+", metavar="IMAGE|DIR|GLOB", help=INPUTS_HELP + " (PNG, JPEG, TIFF, BMP, ...)")
    p.add_argument("--level", choices=list(_LEVELS), default="page",
                   help="page (default): full pages (area -> lines -> recognition); "
                        "line: each image is one text line")
    p.add_argument("--model", default=None,
                   help="recognizer model: a bundle directory (local backend) or a .tflite file "
                        "(runs on LiteRT without --backend); default: the bundled model")
    p.add_argument("--paragraph-model", default=None, help="handwritten-area model (default: bundled)")
    p.add_argument("--lines-model", default=None, help="line detector model (default: bundled)")
    p.add_argument("--no-area", action="store_true",
                   help="skip the handwritten-area model: the whole page is searched for lines")
    add_line_crop_argument(p)
    add_printed_arguments(p)
    p.add_argument("--backend", default=None, metavar="NAME",
                   help="where the networks run, at page and line level: local (default, Keras in this "
                        "process) or tflite (LiteRT)")
    p.add_argument("--jit", action="store_true",
                   help="local backend: run the recogniser compiled by XLA (about 2x faster per line at "
                        "batch 1 on a 2-core CPU, 15%% at batch 32), after a few seconds of compiling the "
                        "batch shapes it pads to: for many pages (--out DIR), not for one")
    p.add_argument("--server", default=None, metavar="HOST:PORT",
                   help="run the networks on a TF Serving / `htr serve` gRPC server, at page and line level; "
                        "images are resized here and decoding stays here, so the results equal local ones")
    from htr_tf.outputs import FORMAT_REGISTRY

    p.add_argument("--format", choices=list(FORMAT_REGISTRY), default="text",
                   help="; ".join(f"{f.name}: {f.help}" + (" (pages only)" if f.document else "")
                                  for f in FORMAT_REGISTRY.values()))
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write one file per page into DIR (NAME.txt|.json|.xml) instead of stdout: "
                        "atomically, skipping pages already written (a stopped run resumes), with a "
                        "progress bar, a summary, and failures in DIR/errors.jsonl")
    p.add_argument("--overlay", default=None, metavar="OUT.png",
                   help="draw the boxes and recognised text on the page: a PNG path, or a "
                        "directory with several pages")
    add_batch_arguments(p)
    add_decoder_arguments(p, best_by_default=True)
    add_variants_argument(p)
    p.add_argument("--batch-size", type=int, default=16, help="lines per recogniser batch")
    p.set_defaults(func=_ocr)
