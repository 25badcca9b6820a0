"""`htr evaluate`: error rates of a model on a record set (recognizer, paragraph, lines, pipeline)."""

from __future__ import annotations

import argparse

from htr_tf.commands.ocr import (DECODER_OPTION_HELP, add_decoder_arguments, add_line_crop_argument,
                                 add_printed_arguments, add_variants_argument, confidence_options,
                                 decoder_from_args, load_recognizer, printed_options, variants_from_args)
from htr_tf.commands.progress import progress_bar


def _evaluate_recognizer(a: argparse.Namespace) -> int:
    import json

    from htr_tf.errors import ConfigError
    from htr_tf.evaluate import evaluate_recognizer
    from htr_tf.fileio import atomic_write_text

    if a.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {a.batch_size}")
    recognizer = load_recognizer(a.model)
    decoder = decoder_from_args(a, recognizer.decoding)
    with progress_bar("evaluate", "line", a.quiet) as progress:
        report = evaluate_recognizer(recognizer, a.data, split=a.split, decoder=decoder,
                                     batch_size=a.batch_size, limit=a.limit, progress=progress,
                                     variants=variants_from_args(a))
    report = {"model": str(a.model), **report}
    if a.report:
        atomic_write_text(a.report, json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    if report["num_lines"] == 0:
        print(f"no lines evaluated (split {a.split})")
        return 0
    rate = report["lines_per_second"]
    print(f"CER {100 * report['cer']:.2f}%  WER {100 * report['wer']:.2f}%  "
          f"({report['num_lines']} lines, {report['ref_chars']} characters, {report['ref_words']} words; "
          f"split {a.split}; decoder {decoder.name}; {rate} lines/s)")
    if a.report:
        print(f"per-line report: {a.report}")
    return 0


def _evaluate_pipeline(a: argparse.Namespace) -> int:
    """``htr evaluate pipeline``: line level and page level side by side, per decoder."""
    import json

    from htr_tf.decode import build_decoder
    from htr_tf.errors import ConfigError
    from htr_tf.evaluate_pipeline import evaluate_pipeline, format_summary, pages_from_files
    from htr_tf.fileio import atomic_write_text
    from htr_tf.pipeline import PipelineOptions, load_pipeline

    if (a.data is None) == (not a.pages):
        raise ConfigError("give either --data RECORDS or --pages IMAGE... (each with NAME.gt.txt beside it)")
    names = [n.strip() for n in a.decoder.split(",") if n.strip()]
    if not names:
        raise ConfigError("--decoder needs at least one decoder name")
    per_decoder = _options_per_decoder(names, a)
    from htr_tf.decode.ctc import option_value

    backend_options: dict = {}
    for kv in a.backend_option:
        key, sep, value = kv.partition("=")
        if not sep:
            raise ConfigError(f"--backend-option takes KEY=VALUE, got {kv!r}")
        backend_options[key] = option_value(value)     # typed: jit=true is True, threads=2 is 2
    if a.backend == "local":
        backend_options.update({k: v for k, v in (("recognizer", a.recognizer), ("paragraph", a.paragraph),
                                                  ("lines", a.lines)) if v is not None})
    options = PipelineOptions(batch_size=a.batch_size, find_area=not a.no_area, line_crop=a.line_crop,
                              **confidence_options(a), **printed_options(a), variants=variants_from_args(a))
    pipeline = load_pipeline(a.backend, names[0], options, per_decoder[0], **backend_options)
    decoders = [pipeline.decoder]
    tuned = getattr(pipeline.backend, "decoding", None)   # the recogniser's, as the pipeline's own decoder
    try:
        decoders += [build_decoder(n, tuned, o) for n, o in zip(names[1:], per_decoder[1:])]
    except BaseException:
        for d in decoders:
            getattr(d, "close", lambda: None)()
        raise
    records = a.data if a.data is not None else pages_from_files(a.pages)
    try:
        with progress_bar("evaluate", "page", a.quiet) as progress:
            report = evaluate_pipeline(pipeline, records, split=a.split, decoders=decoders, limit=a.limit,
                                       progress=progress, worst=a.worst,
                                       sclite=(a.sclite_dir or True) if a.sclite else False)
    finally:
        for d in decoders:
            getattr(d, "close", lambda: None)()
    print(format_summary(report))
    if a.report:
        from htr_tf.report import write_html_report

        html_path, chart = write_html_report(report, a.report)
        print(f"report: {html_path} (chart {chart})")
    if a.json:
        slim = dict(report, worst_lines=[{k: v for k, v in w.items() if k != "image_png"}
                                         for w in report["worst_lines"]])
        atomic_write_text(a.json, json.dumps(slim, indent=1, ensure_ascii=False) + "\n")
        print(f"json: {a.json}")
    return 0


def _options_per_decoder(names: list[str], a: argparse.Namespace) -> list[dict]:
    """``--decoder-option`` and ``--beam-width`` for each of several decoders: an option goes to
    every named decoder that takes it; one that none of them takes is a ConfigError."""
    from htr_tf.decode import decoder_option_names, parse_decoder_options
    from htr_tf.errors import ConfigError

    given = parse_decoder_options(a.decoder_option)
    valid = [decoder_option_names(n) for n in names]    # also checks every name
    out = [{k: v for k, v in given.items() if ok is None or k in ok} for ok in valid]
    for key in given:
        if not any(key in o for o in out):
            listed = "; ".join(f"{n}: {ok}" for n, ok in zip(names, valid))
            raise ConfigError(f"--decoder-option {key}: no decoder among {names} takes it; valid options: {listed}")
    if a.beam_width:
        for n, o in zip(names, out):
            if "beam" in n:
                o["beam_width"] = a.beam_width
    return out


def _add_pipeline_parser(es: argparse._SubParsersAction) -> None:
    q = es.add_parser(
        "pipeline", help="the full page pipeline vs the recogniser on ground-truth lines, per decoder",
        description="Run the page pipeline on a form record set's pages (or page images with NAME.gt.txt "
                    "beside them) and the recogniser on the ground-truth line boxes of the same pages; "
                    "print pooled line-level and page-level CER/WER for every decoder, line detection "
                    "recall/precision at IoU 0.5 and seconds per page by stage. Page texts join the lines "
                    "with one space, so line breaks are not errors (docs/evaluation.md).")
    q.add_argument("--data", default=None, help="form record set directory (from `htr data ...`)")
    q.add_argument("--pages", nargs="+", default=None, metavar="IMAGE",
                   help="page images instead of records; ground truth in NAME.gt.txt (or NAME.txt) beside each")
    q.add_argument("--split", default="test", help="split to evaluate (default: test)")
    q.add_argument("--decoder", default="greedy", metavar="NAMES",
                   help="comma-separated decoders scored on the same network outputs, e.g. greedy,beam+lm")
    q.add_argument("--beam-width", type=int, default=None,
                   help="beam width of the beam decoders (default: the model's tuned one, else the decoder's)")
    q.add_argument("--decoder-option", action="append", default=[], metavar="KEY=VALUE",
                   help=DECODER_OPTION_HELP + "; with several decoders it goes to each one that takes it")
    q.add_argument("--backend", default="local", help="where the networks run: local (default), tflite, grpc")
    q.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the backend's factory (repeatable)")
    q.add_argument("--recognizer", default=None, help="local backend: recogniser bundle (default: bundled)")
    q.add_argument("--paragraph", default=None, help="local backend: paragraph bundle (default: bundled)")
    q.add_argument("--lines", default=None, help="local backend: line detector bundle (default: bundled)")
    q.add_argument("--no-area", action="store_true", help="skip the handwritten-area model (whole page)")
    add_line_crop_argument(q)
    add_printed_arguments(q)
    add_variants_argument(q)
    q.add_argument("--report", default=None, metavar="OUT.html",
                   help="write the HTML report (and OUT.cer.png, the CER chart, beside it)")
    q.add_argument("--json", default=None, metavar="OUT.json", help="write the full report as JSON")
    q.add_argument("--limit", type=int, default=None, help="only the first N pages")
    q.add_argument("--worst", type=int, default=20, help="worst lines shown in the report (default 20)")
    q.add_argument("--sclite", action="store_true",
                   help="also score WER with NIST sclite (Debian package sctk) when installed")
    q.add_argument("--sclite-dir", default=None, help="keep sclite's .trn files here")
    q.add_argument("--batch-size", type=int, default=16, help="lines per recogniser batch")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_evaluate_pipeline)


def _evaluate_printed(a: argparse.Namespace) -> int:
    """``htr evaluate printed``: printed ink inside handwritten regions, per page."""
    import json

    from htr_tf.fileio import atomic_write_text
    from htr_tf.pipeline import PipelineOptions, load_pipeline
    from htr_tf.printed import evaluate_printed

    models = {k: v for k, v in (("paragraph", a.paragraph), ("lines", a.lines)) if v is not None}
    pipeline = load_pipeline("local", "greedy", PipelineOptions(find_area=not a.no_area), **models)
    with progress_bar("evaluate", "page", a.quiet) as progress:
        report = evaluate_printed(pipeline, a.data, split=a.split, limit=a.limit, progress=progress)
    if a.report:
        atomic_write_text(a.report, json.dumps(report, indent=1) + "\n")
    print(f"pages with printed ink in a handwritten region {report['pages_printed_in_handwritten_region']} "
          f"(in a handwritten line {report['pages_printed_in_handwritten_line']})  "
          f"printed components {report['printed_components']}  found in printed lines "
          f"{report['printed_found']:.4f}  pages with printed regions {report['pages_with_printed_regions']}  "
          f"layout_ms_per_page {report['layout_ms_per_page']:.1f}  ({report['pages']} pages, split {a.split})")
    if a.report:
        print(f"per-page report: {a.report}")
    return 0


def _add_printed_parser(es: argparse._SubParsersAction) -> None:
    q = es.add_parser(
        "printed", help="printed text kept out of the handwritten regions (forms whose handwriting is all in the GT)",
        description="Run the page layout (area, lines, printed lines outside the area) on every form of a split "
                    "and count the printed ink components (ink outside the ground-truth handwritten lines: "
                    "meant for synthetic forms, where that is all print) inside handwritten regions and "
                    "lines, and the share found in printed lines (htr_tf.printed).")
    q.add_argument("--data", required=True, help="form record set directory (e.g. iam-prepare of `htr data synth`)")
    q.add_argument("--split", default="test", help="split to evaluate (default: test)")
    q.add_argument("--paragraph", default=None, help="paragraph bundle (default: bundled)")
    q.add_argument("--lines", default=None, help="line detector bundle (default: bundled)")
    q.add_argument("--no-area", action="store_true", help="skip the handwritten-area model (whole page)")
    q.add_argument("--limit", type=int, default=None, help="only the first N forms")
    q.add_argument("--report", default=None, metavar="OUT.json", help="write the report with per-page records")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_evaluate_printed)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="CER/WER and layout metrics on a record set")
    es = p.add_subparsers(dest="evaluate_command", metavar="MODEL", required=True)
    from htr_tf.commands.layout_args import add_evaluate_parsers

    add_evaluate_parsers(es)  # paragraph, lines
    _add_pipeline_parser(es)
    _add_printed_parser(es)

    q = es.add_parser(
        "recognizer", help="pooled CER and WER of a line recogniser on a record set's lines",
        description="Recognise every line of a record set's split and print pooled CER and WER "
                    "(total edits over total reference length; spaces count in CER).")
    q.add_argument("--model", required=True, help="recognizer bundle directory")
    q.add_argument("--data", required=True, help="record set directory (from `htr data ...`)")
    q.add_argument("--split", default="test", help="split to evaluate (default: test)")
    add_decoder_arguments(q)
    add_variants_argument(q)
    q.add_argument("--report", default=None, metavar="OUT.json",
                   help="write the report with one record per line (id, ref, hyp, cer, wer, confidence)")
    q.add_argument("--limit", type=int, default=None, help="only the first N lines of the split")
    q.add_argument("--batch-size", type=int, default=32)
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_evaluate_recognizer)
