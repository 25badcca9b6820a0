"""`htr evaluate`: error rates of a model on a record set (``recognizer`` for now)."""

from __future__ import annotations

import argparse

from htr_tf.commands.ocr import add_decoder_arguments, decoder_from_args, load_recognizer


def _evaluate_recognizer(a: argparse.Namespace) -> int:
    import json
    import sys

    from htr_tf.errors import ConfigError
    from htr_tf.evaluate import evaluate_recognizer
    from htr_tf.fileio import atomic_write_text

    if a.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {a.batch_size}")
    recognizer = load_recognizer(a.model)
    decoder = decoder_from_args(a)
    bar = None
    if not a.quiet:
        from tqdm import tqdm

        bar = tqdm(desc="evaluate", unit="line", file=sys.stderr, leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        report = evaluate_recognizer(recognizer, a.data, split=a.split, decoder=decoder,
                                     batch_size=a.batch_size, limit=a.limit,
                                     progress=progress if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="CER/WER and layout metrics on a record set")
    es = p.add_subparsers(dest="evaluate_command", metavar="MODEL", required=True)
    from htr_tf.commands.layout_args import add_evaluate_parsers

    add_evaluate_parsers(es)  # paragraph, lines

    q = es.add_parser(
        "recognizer", help="pooled CER and WER of a line recogniser on a record set's lines",
        description="Recognise every line of a record set's split and print pooled CER and WER "
                    "(total edits over total reference length; spaces count in CER).")
    q.add_argument("--model", required=True, help="recognizer bundle directory")
    q.add_argument("--data", required=True, help="record set directory (from `htr data ...`)")
    q.add_argument("--split", default="test", help="split to evaluate (default: test)")
    add_decoder_arguments(q)
    q.add_argument("--report", default=None, metavar="OUT.json",
                   help="write the report with one record per line (id, ref, hyp, cer, wer, confidence)")
    q.add_argument("--limit", type=int, default=None, help="only the first N lines of the split")
    q.add_argument("--batch-size", type=int, default=32)
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_evaluate_recognizer)
