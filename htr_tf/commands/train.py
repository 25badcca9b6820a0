"""`htr train`: train models with keras.fit (``recognizer`` for now)."""

from __future__ import annotations

import argparse
import os


def _train_recognizer(a: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from htr_tf.errors import ConfigError
    from htr_tf.train.recognizer import DataSpec, TrainConfig, train_recognizer

    config = TrainConfig.load(a.config) if a.config else TrainConfig()
    changes: dict = {}
    if a.data:
        changes["data"] = tuple(DataSpec.parse(d) for d in a.data)
    if a.validation:
        changes["validation"] = DataSpec.parse(a.validation, default_split="validation")
    for name in ("epochs", "steps_per_epoch", "batch_size", "seed", "learning_rate", "charset"):
        value = getattr(a, name)
        if value is not None:
            changes[name] = value
    if a.no_augment:
        changes["augment"] = False
    if changes:
        try:
            config = TrainConfig.from_dict({**config.to_dict(), **changes})
        except ConfigError as e:
            raise ConfigError(f"command-line overrides: {e}") from None
    if not a.out:
        raise ConfigError("--out DIR is required (the run's output and resume directory)")
    result = train_recognizer(config, a.out, distribute=a.distribute, mixed_precision=a.mixed_precision,
                              init=a.init, verbose=0 if a.quiet else 1)
    last = result.history[-1] if result.history else {}
    summary = ", ".join(f"{k} {last[k]:.4f}" for k in ("loss", "val_cer", "val_wer") if k in last)
    print(f"done: {len(result.history)} epoch(s) recorded{'; ' + summary if summary else ''}; "
          f"best bundle: {result.best or '-'}; last bundle: {result.last or '-'}")
    return 0


def _average(a: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from htr_tf.errors import ConfigError
    from htr_tf.models.average import average_bundles

    weights = None
    if a.weights:
        try:
            weights = [float(x) for x in a.weights.split(",")]
        except ValueError:
            raise ConfigError(f"--weights: expected comma-separated numbers, got {a.weights!r}") from None
    bundle = average_bundles(a.bundles, weights)
    bundle.save(a.out)
    check = {"lines": "lines --model", "paragraph": "paragraph --model"}.get(bundle.metadata()["kind"],
                                                                         "recognizer --model")
    print(f"averaged {len(a.bundles)} bundles into {a.out}; check it on a validation split: "
          f"htr evaluate {check} {a.out} --data RECORDS --split validation")
    return 0


def _train_line_type(a: argparse.Namespace) -> int:
    import json

    from htr_tf.bundle import require_bundled
    from htr_tf.train.line_type import LineTypeSource, train_line_type

    train = ([LineTypeSource.parse(s, True, "train") for s in a.forms]
             + [LineTypeSource.parse(s, False, "train") for s in a.handwritten])
    val = ([LineTypeSource.parse(s, True, "validation") for s in a.val_forms]
           + [LineTypeSource.parse(s, False, "validation") for s in a.val_handwritten])
    lines = a.lines or require_bundled("lines")
    info = train_line_type(lines, a.out, train, val, threshold=a.threshold, limit=a.limit, per_page=a.per_page,
                           seed=a.seed, paragraph=a.paragraph, progress=not a.quiet)
    print(json.dumps({"out": str(a.out), **{k: info[k] for k in ("train", "train_score", "validation",
                                                                 "validation_thresholds") if k in info}},
                     indent=1))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (recognizer, paragraph, lines) with keras.fit")
    ts = p.add_subparsers(dest="train_command", metavar="MODEL", required=True)
    from htr_tf.commands.layout_args import add_train_parsers

    add_train_parsers(ts)  # paragraph, lines

    q = ts.add_parser(
        "recognizer", help="train the CNN-BiLSTM-CTC line recogniser",
        description="Train the line recogniser. Re-running the same command with the same --out "
                    "resumes from the last finished epoch.")
    q.add_argument("--config", help="training recipe (YAML/JSON), e.g. training/recognizer.yaml")
    q.add_argument("--data", nargs="+", metavar="RECORDS[:SPLIT[:WEIGHT]]",
                   help="training record sets, replacing the config's `data` (split defaults to train)")
    q.add_argument("--validation", metavar="RECORDS[:SPLIT]",
                   help="validation record set (split defaults to validation)")
    q.add_argument("--out", required=True, help="output directory (bundles, history, logs, backup)")
    q.add_argument("--epochs", type=int)
    q.add_argument("--steps-per-epoch", type=int)
    q.add_argument("--batch-size", type=int, help="global batch size (summed over replicas)")
    q.add_argument("--learning-rate", type=float)
    q.add_argument("--no-augment", action="store_true", help="switch augmentation off")
    q.add_argument("--distribute", choices=["none", "mirrored", "multiworker"], default="none",
                   help="mirrored: local GPUs; multiworker: the machines in TF_CONFIG")
    q.add_argument("--mixed-precision", action="store_true", help="mixed_float16 (softmax stays float32)")
    q.add_argument("--init", metavar="MODEL", help="fine-tune from this recognizer bundle")
    q.add_argument("--charset", metavar="iam|latin|FILE",
                   help="characters to recognise (default: the --init bundle's, else the records'); "
                        "with --init it must extend the bundle's charset (new output units start fresh)")
    q.add_argument("--seed", type=int)
    q.add_argument("--quiet", action="store_true", help="no progress bars")
    q.set_defaults(func=_train_recognizer)

    t = ts.add_parser(
        "line-type", help="fit the printed-or-handwritten classifier for lines outside the handwritten area",
        description="Fit the classifier that tells the lines found outside the handwritten area apart "
                    "(printed, or handwriting such as a date line, a signature or a page id) and write a copy of "
                    "the line detector bundle that carries it (htr_tf.line_type). Handwritten examples are the "
                    "ground-truth lines of every record set; printed ones are the lines found outside the area "
                    "of --forms record sets (whose handwriting is all in the ground truth) that match none.")
    t.add_argument("--forms", nargs="*", default=[], metavar="RECORDS[:SPLIT]",
                   help="form records whose handwriting is all in the ground truth (synthetic forms, copiste): "
                        "handwritten and printed examples (split defaults to train)")
    t.add_argument("--handwritten", nargs="*", default=[], metavar="RECORDS[:SPLIT]",
                   help="form records giving handwritten examples only")
    t.add_argument("--val-forms", nargs="*", default=[], metavar="RECORDS[:SPLIT]",
                   help="validation forms, scored per set (split defaults to validation)")
    t.add_argument("--val-handwritten", nargs="*", default=[], metavar="RECORDS[:SPLIT]")
    t.add_argument("--lines", help="line detector bundle to extend (default: bundled)")
    t.add_argument("--paragraph", help="handwritten-area bundle used to find the outside lines (default: bundled)")
    t.add_argument("--out", required=True, help="output line detector bundle directory (written atomically)")
    t.add_argument("--threshold", type=float, default=0.5,
                   help="printed probability below which an outside line is read as handwriting (default 0.5)")
    t.add_argument("--limit", type=int, help="pages per record set")
    t.add_argument("--per-page", type=int, default=6, help="ground-truth lines taken per training page")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_train_line_type)

    v = ts.add_parser(
        "average", help="average the weights of bundles from one start (checkpoint averaging, model soup)",
        description="Average the weights of bundles (recognizer, lines or paragraph) of one network that "
                    "started from the same bundle: epoch snapshots of one run, runs with other seeds or data "
                    "weights (model soup), or a fine-tune and its start (--weights 1,1 is halfway). Check "
                    "the average on a validation split before using it.")
    v.add_argument("bundles", nargs="+", metavar="BUNDLE", help="bundle directories of one kind (two or more)")
    v.add_argument("--out", required=True, help="output bundle directory (written atomically)")
    v.add_argument("--weights", metavar="W1,W2,...", help="relative weight of each bundle (default: equal)")
    v.set_defaults(func=_average)
