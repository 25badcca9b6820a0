"""`htr beam`: batch OCR of a collection as an Apache Beam pipeline (:mod:`htr_tf.beam_pipeline`).

Takes ``htr ocr``'s model, backend, decoder and format options (the same argparse actions,
borrowed from its parser, so the two never drift apart) and passes every option it does not
know to Beam (``--runner``, ``--direct_num_workers``, ``--project``, ...).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys

#: ``htr ocr`` options that do not apply to ``htr beam`` (its own inputs and outputs, levels,
#: local processes).
_NOT_BORROWED = {"help", "images", "level", "out", "overlay", "workers", "overwrite"}


def _borrow_ocr_options(p: argparse.ArgumentParser) -> None:
    """Add ``htr ocr``'s page-pipeline options (models, backend, server, format, decoder,
    batch size) to ``p``."""
    from htr_tf.commands import ocr

    tmp = argparse.ArgumentParser(add_help=False)
    sub = tmp.add_subparsers()
    ocr.register(sub)
    ocr_parser = sub.choices["ocr"]
    for action in ocr_parser._actions:  # argparse keeps no public list; `parents=` uses the same
        if action.dest not in _NOT_BORROWED:
            p._add_action(action)


def _beam(a: argparse.Namespace) -> int:
    try:
        import apache_beam as beam
    except ImportError:
        from htr_tf.errors import ConfigError

        raise ConfigError("htr beam needs Apache Beam: pip install \"htr-tf[beam]\"") from None
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

    from htr_tf.batch import BatchSummary, threads_per_worker
    from htr_tf.beam_pipeline import build_pipeline, check_output, counts
    from htr_tf.commands.ocr import pipeline_from_args
    from htr_tf.errors import ConfigError

    if a.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {a.batch_size}")
    options = PipelineOptions(a.beam_args)
    threads = a.threads
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    direct = options.view_as(DirectOptions)
    is_direct = runner in ("DirectRunner", "direct", "SwitchingDirectRunner")
    if threads is None and is_direct and (direct.direct_num_workers or 1) > 1:
        threads = threads_per_worker(direct.direct_num_workers)
    if is_direct and not os.environ.get("HTR_TF_VERBOSE"):
        # The local workers forward every log line (resource module, semi-persistent dirs...).
        logging.getLogger("apache_beam").setLevel(logging.ERROR)
    check_output(a.output)
    factory = functools.partial(pipeline_from_args, a)
    import time

    t0 = time.perf_counter()
    print(f"htr: Beam pipeline on {runner}: {', '.join(a.input)} -> {a.output}", file=sys.stderr)
    p = beam.Pipeline(options=options)
    build_pipeline(p, a.input, a.output, factory, a.format, a.overwrite, threads)
    result = p.run()
    result.wait_until_finish()
    c = counts(result)
    s = BatchSummary(total=sum(c.values()), done=c["done"], no_text=c["no-text"], skipped=c["skipped"],
                     failed=c["failed"], seconds=round(time.perf_counter() - t0, 3),
                     errors_file=f"{a.output.rstrip('/')}/errors.jsonl")
    print(f"htr: {s.line()}", file=sys.stderr)
    return 1 if s.failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    from htr_tf.commands.batch_args import INPUTS_HELP

    p = sub.add_parser(
        "beam", help="batch OCR of a collection on Apache Beam (Direct, Dataflow, Flink, Spark)",
        allow_abbrev=False,
        description="Read every page of a collection with an Apache Beam pipeline and write one output "
                    "per page into --output (names as in `htr ocr --out`), plus index.jsonl (every page's "
                    "status) and errors.jsonl (failures and pages without text). Pages whose output "
                    "exists are skipped, so a stopped run resumes. Options this command does not know "
                    "go to Beam, e.g. --runner DirectRunner --direct_num_workers 2 "
                    "--direct_running_mode multi_processing, or --runner DataflowRunner --project P "
                    "--region R --temp_location gs://... (see README). Needs the beam extra.")
    p.add_argument("--input", nargs="+", required=True, metavar="DIR|GLOB|FILE",
                   help=INPUTS_HELP + "; local paths or any file system Beam knows (gs://, s3://)")
    p.add_argument("--output", required=True, metavar="DIR", help="output directory (local, gs://, s3://)")
    p.add_argument("--overwrite", action="store_true",
                   help="read every page again, replacing outputs already written")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="TensorFlow/OpenCV threads in each worker process (default: their own choice; "
                        "with the DirectRunner's --direct_num_workers K, the cores divided by K)")
    _borrow_ocr_options(p)
    p.set_defaults(func=_beam, pass_unknown_args="beam_args", beam_args=[])
