"""Command-line wiring of the layout models: ``paragraph`` and ``lines`` under ``htr train``,
``htr evaluate`` and ``htr export``.

The owning command modules call these with their sub-subparsers object::

    add_train_parsers(ts)      # in commands/train.py, ts = the `htr train` subparsers
    add_evaluate_parsers(es)   # in commands/evaluate.py
    add_export_parsers(xs)     # in commands/export.py

Only the standard library is imported at module level (``htr --help`` stays instant).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from htr_tf.commands.progress import progress_bar

__all__ = ["add_train_parsers", "add_evaluate_parsers", "add_export_parsers", "load_layout_model",
           "default_layout_model_path"]

KINDS = ("paragraph", "lines")


def default_layout_model_path(kind: str) -> Path:
    """Where the bundled ``kind`` model lives (``htr_tf/assets/models/KIND``)."""
    import htr_tf

    return Path(htr_tf.__file__).resolve().parent / "assets" / "models" / kind


def load_layout_model(kind: str, model: str | None) -> Any:
    """The ``kind`` bundle at ``model`` (None or ``bundled``: the bundled one)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from htr_tf.errors import ModelError

    if model is None or model == "bundled":
        path = default_layout_model_path(kind)
        if not (path / "htr.json").exists():
            raise ModelError(f"no bundled {kind} model in this installation ({path}); pass --model BUNDLE "
                             f"(a directory written by `htr train {kind}`)")
    else:
        path = Path(model)
    if kind == "paragraph":
        from htr_tf.models.paragraph import ParagraphModel

        return ParagraphModel.load(path)
    from htr_tf.models.lines import LineDetector

    return LineDetector.load(path)


# -- train ---------------------------------------------------------------------------------------------
def _train(kind: str):
    def run(a: argparse.Namespace) -> int:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from htr_tf.errors import ConfigError
        from htr_tf.train.layout import LinesTrainConfig, ParagraphTrainConfig, train_lines, train_paragraph

        cls = ParagraphTrainConfig if kind == "paragraph" else LinesTrainConfig
        config = cls.load(a.config) if a.config else cls()
        changes: dict = {}
        if a.data:
            changes["data"] = list(a.data)
        if a.validation:
            changes["validation"] = list(a.validation)
        for name in ("epochs", "steps_per_epoch", "batch_size", "learning_rate", "warmup_steps", "seed"):
            value = getattr(a, name)
            if value is not None:
                changes[name] = value
        if a.no_augment:
            changes["augment"] = False
        if changes or a.set:
            d = {**config.to_dict(), **changes}
            for item in a.set or ():
                _set_dotted(d, item)
            try:
                config = cls.from_dict(d)
            except ConfigError as e:
                raise ConfigError(f"command-line overrides: {e}") from None
        fn = train_paragraph if kind == "paragraph" else train_lines
        result = fn(config, a.out, init=a.init, verbose=0 if a.quiet else 1)
        last = result.history[-1] if result.history else {}
        shown = ", ".join(f"{k} {v:.4f}" for k, v in last.items() if k != "epoch" and isinstance(v, float))
        print(f"done: {len(result.history)} epoch(s) recorded{'; ' + shown if shown else ''}; "
              f"best bundle: {result.best or '-'}; last bundle: {result.last or '-'}")
        return 0

    return run


def _set_dotted(d: dict, item: str) -> None:
    """Apply one ``KEY.SUBKEY=VALUE`` override (the value parsed as YAML) to a config dict."""
    import yaml

    from htr_tf.errors import ConfigError

    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. model.input_width=384")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {item!r}: cannot parse the value: {e}") from None
    parts = key.split(".")
    node = d
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"--set {item!r}: {part!r} is not a section of the config")
        node = node[part]
    if parts[-1] not in node:
        raise ConfigError(f"--set {item!r}: unknown key {parts[-1]!r}; valid: {sorted(node)}")
    node[parts[-1]] = value


def add_train_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add ``paragraph`` and ``lines`` to the ``htr train`` subparsers."""
    helps = {"paragraph": "train the handwritten-area model (small U-Net, mask -> box)",
             "lines": "train the text-line detector (small U-Net, line bands -> boxes)"}
    for kind in KINDS:
        q = subparsers.add_parser(
            kind, help=helps[kind],
            description=f"{helps[kind][0].upper()}{helps[kind][1:]} on form record sets (from `htr data "
                        f"iam-prepare` of real or synthetic IAM forms, `htr data gw-prepare`). Re-running "
                        f"the same command with the same --out resumes from the last finished epoch.")
        q.add_argument("--config", help=f"training recipe (YAML/JSON), e.g. training/{kind}.yaml")
        q.add_argument("--data", nargs="+", metavar="RECORDS[:SPLIT[:WEIGHT]]",
                       help="training form record sets, replacing the config's `data` (split defaults to "
                            "train; weights are sampling proportions)")
        q.add_argument("--validation", nargs="+", metavar="RECORDS[:SPLIT]",
                       help="validation record sets (split defaults to validation; default: the first "
                            "set's validation or validation1 forms)")
        q.add_argument("--out", required=True, help="output directory (bundles, history, backup)")
        q.add_argument("--epochs", type=int)
        q.add_argument("--steps-per-epoch", type=int)
        q.add_argument("--batch-size", type=int)
        q.add_argument("--learning-rate", type=float)
        q.add_argument("--warmup-steps", type=int)
        q.add_argument("--set", nargs="+", metavar="KEY=VALUE",
                       help="override any config field, dotted for sections (YAML values), e.g. "
                            "model.input_width=384 cache_area_width=560")
        q.add_argument("--no-augment", action="store_true", help="switch augmentation off")
        q.add_argument("--init", metavar="MODEL", help=f"fine-tune from this {kind} bundle")
        q.add_argument("--seed", type=int)
        q.add_argument("--quiet", action="store_true", help="no progress bars")
        q.set_defaults(func=_train(kind))


# -- evaluate ------------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _evaluate(kind: str):
    def run(a: argparse.Namespace) -> int:
        from htr_tf.fileio import atomic_write_text
        from htr_tf.layout_eval import evaluate_lines, evaluate_paragraph

        model = load_layout_model(kind, a.model)
        with progress_bar(f"evaluate {kind}", "page", a.quiet) as progress:
            if kind == "paragraph":
                report = evaluate_paragraph(model, a.data, split=a.split, limit=a.limit, progress=progress)
            else:
                area = None if a.area == "gt" else load_layout_model("paragraph", a.area)
                report = evaluate_lines(model, a.data, split=a.split, paragraph=area, limit=a.limit,
                                        progress=progress)
        report = {"model": str(a.model or "bundled"), "data": str(a.data), **report}
        if a.report:
            atomic_write_text(a.report, json.dumps(report, indent=1) + "\n")
        if report["pages"] == 0:
            print(f"no pages evaluated (split {a.split})")
            return 0
        if kind == "paragraph":
            keys = ("mean_iou", "median_iou", "min_iou", "iou_at_least_0.95", "ms_per_page")
        else:
            keys = ("recall50", "precision50", "f150", "ap50", "ap75", "map", "recall75", "precision75",
                    "mean_best_iou", "ms_per_page")
        print("  ".join(f"{k} {_fmt(report[k])}" for k in keys) +
              f"  ({report['pages']} pages, split {a.split}" +
              (f", area from {report['area']})" if kind == "lines" else ")"))
        if kind == "lines":
            shape_keys = [k for k in ("polygon_recall50", "polygon_precision50", "baseline_recall",
                                      "baseline_precision", "baseline_f1", "shapes_ms_per_page") if k in report]
            if shape_keys:
                print("  ".join(f"{k} {_fmt(report[k])}" for k in shape_keys))
            if len(report.get("per_source", {})) > 1:
                for source, d in report["per_source"].items():
                    print(f"  {source}: " + "  ".join(f"{k} {_fmt(v)}" for k, v in d.items()))
        if a.report:
            print(f"per-page report: {a.report}")
        return 0

    return run


def add_evaluate_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add ``paragraph`` and ``lines`` to the ``htr evaluate`` subparsers."""
    for kind in KINDS:
        if kind == "paragraph":
            q = subparsers.add_parser(
                kind, help="mean IoU of the handwritten-area model on a record set's forms",
                description="Detect the handwritten area of every form of a split and print the mean, "
                            "median and minimum IoU with the ground-truth area (union of the line boxes).")
        else:
            q = subparsers.add_parser(
                kind, help="line precision/recall and COCO-style AP of the line detector",
                description="Detect the lines of every form of a split and print precision, recall and F1 "
                            "at IoU 0.5 and 0.75, AP50, AP75 and mAP (COCO AP@[.50:.95], 101-point); "
                            "where the records carry line polygons and baselines (htr data xml-prepare), "
                            "also polygon precision/recall at IoU 0.5 and cBAD-style baseline "
                            "precision/recall/F of the derived line shapes; per source when several.")
            q.add_argument("--area", default="gt", metavar="gt|bundled|MODEL",
                           help="where the handwritten area comes from: the ground truth (default), the "
                                "bundled paragraph model or a paragraph bundle (end to end)")
        q.add_argument("--model", default=None, help=f"{kind} bundle directory (default: the bundled model)")
        q.add_argument("--data", required=True, help="form record set directory (from `htr data ...`)")
        q.add_argument("--split", default="test", help="split to evaluate (default: test)")
        q.add_argument("--limit", type=int, default=None, help="only the first N forms of the split")
        q.add_argument("--report", default=None, metavar="OUT.json", help="write the report with per-page records")
        q.add_argument("--quiet", action="store_true", help="no progress bar")
        q.set_defaults(func=_evaluate(kind))


# -- export --------------------------------------------------------------------------------------------
def _export(kind: str):
    def run(a: argparse.Namespace) -> int:
        model = load_layout_model(kind, a.model)
        if kind == "paragraph":
            from htr_tf.models.paragraph import SIGNATURES, export_paragraph as export
        else:
            from htr_tf.models.lines import SIGNATURES, export_lines as export
        out = export(model, a.out)
        print(f"exported {out} (signatures: {', '.join(SIGNATURES)}; config and geometry in assets/htr.json "
              f"and the metadata signature)")
        return 0

    return run


def add_export_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add ``paragraph`` and ``lines`` to the ``htr export`` subparsers."""
    desc = {"paragraph": "Write a SavedModel whose signature detect (also serving_default) takes a uint8 gray "
                         "page image of any size and returns the handwritten area box in page pixels "
                         "(box, score, found), plus metadata.",
            "lines": "Write a SavedModel whose signatures detect (also serving_default; image + region box) "
                     "and detect_page (image) take a uint8 gray page image of any size and return line "
                     "boxes in page pixels in reading order (boxes, scores), plus metadata."}
    for kind in KINDS:
        q = subparsers.add_parser(kind, help=f"export a {kind} bundle as a SavedModel for TF Serving",
                                  description=desc[kind] + " Written beside --out and renamed into place.")
        q.add_argument("--model", default=None, help=f"{kind} bundle directory (default: the bundled model)")
        q.add_argument("--out", required=True, help="SavedModel directory to write (replaced if present)")
        q.set_defaults(func=_export(kind))
