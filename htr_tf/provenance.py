"""Provenance that says what the data was, never where it lay on the machine that made a model.

A bundle's ``info`` records the data a model was trained and validated on.  Paths such as
``/home/me/htrdata/synth-rec`` mean nothing to a user of the bundled model, so every save
(:func:`htr_tf.bundle.save_bundle`) runs :func:`clean_provenance`:

* a ``{"records": PATH, ...}`` entry keeps only the record set's name and gains ``data``:
  how the records were made (from their ``manifest.json`` and, for synthetic forms, the
  ``synth.json`` beside the forms: ``htr data synth --pages 800 --seed 1`` ...) and how many
  lines the split holds, when the record set can still be read;
* a path under ``data``, ``lm`` or ``lexicon`` keeps its name, any other absolute path its
  last two components (``rec-stride/best``);
* the machine's host name (``environment.node``) is dropped.

``python -m htr_tf.provenance BUNDLE... [--describe NAME=TEXT]`` rewrites existing bundles'
``htr.json`` the same way (``--describe`` says what a record set was when it is gone).

>>> clean_provenance({"init": "/home/me/runs/rec/best", "data": [{"records": "/x/gw-rec", "split": "train"}],
...                   "environment": {"python": "3.11", "node": "vm"}})
{'init': 'rec/best', 'data': [{'records': 'gw-rec', 'split': 'train'}], 'environment': {'python': '3.11'}}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Mapping, Sequence

__all__ = ["describe_records", "clean_provenance", "is_machine_path", "rewrite_bundle_provenance"]

#: Keys dropped wherever they appear in an ``environment`` section.
_MACHINE_KEYS = ("node", "hostname", "user", "cwd")
#: Keys whose path values keep only their last component (a record set's, an LM's name).
_NAMED_KEYS = ("records", "data", "lm", "lexicon")


def is_machine_path(value: Any) -> bool:
    """An absolute file system path (POSIX, ``~``, or Windows drive) with at least two parts."""
    if not isinstance(value, str) or not value or "\n" in value or len(value) > 4096:
        return False
    if value.startswith("~/"):
        return True
    if value.startswith("/") and len(PurePosixPath(value).parts) > 2:
        return True
    return PureWindowsPath(value).drive != "" and len(PureWindowsPath(value).parts) > 2


def _short(value: str) -> str:
    parts = (PureWindowsPath(value) if PureWindowsPath(value).drive else PurePosixPath(value)).parts
    return "/".join(parts[-2:])


def describe_records(path: str | os.PathLike, split: str | None = None) -> dict[str, Any] | None:
    """What a record set was made from (``made_by``), its ``source`` and the ``split``'s line
    count, read from its manifest; None when it cannot be read."""
    p = Path(path)
    try:
        manifest = json.loads((p / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    source = str(manifest.get("source") or "")
    info = manifest.get("info") or {}
    made_by = None
    if source == "iam":
        synth = None
        iam_dir = info.get("iam_dir")
        if iam_dir:
            try:
                synth = json.loads((Path(iam_dir) / "synth.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                synth = None
        if synth:
            made_by = (f"htr data synth --pages {synth.get('pages')} --seed {synth.get('seed')} --out FORMS "
                       f"&& htr data iam-prepare --iam FORMS")
        else:
            made_by = "htr data iam-prepare --iam IAM (the IAM database)"
    elif source == "gw":
        crop = info.get("crop")
        made_by = "htr data gw-prepare --gw GW" + (f" --crop {crop}" if crop else "")
    out: dict[str, Any] = {"source": source or None, "made_by": made_by}
    if split:
        entry = (manifest.get("lines") or {}).get(split) or (manifest.get("forms") or {}).get(split)
        if isinstance(entry, Mapping):
            out["count"] = int(entry.get("count", 0))
    return out


def clean_provenance(info: Any, describe: Mapping[str, str] | None = None) -> Any:
    """``info`` without this machine's paths (see the module docstring).

    ``describe`` maps a record set's name to a description used when its manifest cannot be
    read (the record set is gone or was made elsewhere).
    """
    describe = dict(describe or {})

    def walk(x: Any, key: str | None = None) -> Any:
        if isinstance(x, Mapping):
            out = {}
            for k, v in x.items():
                if key == "environment" and k in _MACHINE_KEYS:
                    continue
                out[k] = walk(v, k)
            rec = x.get("records")
            if is_machine_path(rec) or (isinstance(rec, str) and rec in describe):
                name = Path(rec).name if is_machine_path(rec) else rec
                out["records"] = name
                if "data" not in x:
                    found = describe_records(rec, x.get("split")) if is_machine_path(rec) else None
                    if found is None and name in describe:
                        found = {"made_by": describe[name]}
                    if found is not None:
                        out["data"] = found
            return out
        if isinstance(x, (list, tuple)):
            return [walk(v, key) for v in x]
        if is_machine_path(x):
            return Path(x).name if key in _NAMED_KEYS else _short(x)
        return x

    return walk(info)


def rewrite_bundle_provenance(bundle: str | os.PathLike, describe: Mapping[str, str] | None = None) -> bool:
    """Clean ``bundle/htr.json``'s ``info`` and ``decoding`` provenance in place (atomically);
    True when it changed."""
    from htr_tf.fileio import atomic_write_text

    path = Path(bundle) / "htr.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    new = dict(meta)
    for key in ("info", "decoding"):
        if key in new:
            new[key] = clean_provenance(new[key], describe)
    if new == meta:
        return False
    atomic_write_text(path, json.dumps(new, indent=2, ensure_ascii=False))
    return True


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m htr_tf.provenance",
                                 description="Rewrite bundles' htr.json provenance without this machine's paths.")
    ap.add_argument("bundles", nargs="+", metavar="BUNDLE", help="bundle directories (holding htr.json)")
    ap.add_argument("--describe", action="append", default=[], metavar="NAME=TEXT",
                    help="what record set NAME was, when its manifest is gone, e.g. "
                         "synth-rec='htr data synth --pages 800 --seed 1 && htr data iam-prepare'")
    a = ap.parse_args(argv)
    describe = {}
    for item in a.describe:
        name, sep, text = item.partition("=")
        if not sep or not name:
            ap.error(f"--describe takes NAME=TEXT, got {item!r}")
        describe[name] = text
    for b in a.bundles:
        changed = rewrite_bundle_provenance(b, describe)
        print(f"{b}: {'rewritten' if changed else 'already clean'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
