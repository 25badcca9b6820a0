"""`htr data`: download, synthesise and convert data to record sets."""

from __future__ import annotations

import argparse
import os

def _data_iam_download(a: argparse.Namespace) -> int:
    from htr_tf.data.iam_download import download_iam

    done = download_iam(a.out, credentials=a.credentials, base_url=a.base_url, parts=a.parts,
                        progress=not a.quiet, auth=a.auth)
    for part, status in done.items():
        print(f"{part:10s} {status}")
    return 0


def _data_iam_prepare(a: argparse.Namespace) -> int:
    from htr_tf.data.iam import prepare_iam

    manifest = prepare_iam(a.iam, a.out, per_shard=a.per_shard, unknown=a.unknown,
                           include_err=not a.skip_err, progress=not a.quiet)
    _print_manifest(manifest)
    return 0


def _data_gw_prepare(a: argparse.Namespace) -> int:
    from htr_tf.data.gw import prepare_gw

    manifest = prepare_gw(a.gw, a.out, train_pages=a.train_pages, val_pages=a.val_pages,
                          test_pages=a.test_pages, progress=not a.quiet, crop=a.crop)
    _print_manifest(manifest)
    return 0


def _attribution_lines(items: list[str]) -> list[str]:
    """``--attribution`` values: text, or ``@FILE`` for the file's non-empty lines."""
    from htr_tf.errors import DataError

    out: list[str] = []
    for item in items:
        if item.startswith("@"):
            try:
                with open(item[1:], encoding="utf-8") as f:
                    out += [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
            except OSError as e:
                raise DataError(f"--attribution {item}: {e}") from None
        else:
            out.append(item)
    return out


def _data_xml_prepare(a: argparse.Namespace) -> int:
    from htr_tf.charset import load_charset
    from htr_tf.data.xml_gt import parse_split_args, prepare_xml

    fractions = None
    if a.split_hash:
        fractions = {}
        for part in a.split_hash.split(","):
            k, _, v = part.partition("=")
            fractions[k.strip()] = float(v)
    manifest = prepare_xml(a.xml, a.out, images=a.images, source=a.source or "xml", markup=a.markup,
                           split_files=parse_split_args(a.split_file) if a.split_file else None,
                           split_fractions=fractions, crop=a.crop, writer=a.writer,
                           charset=load_charset(a.charset), per_shard=a.per_shard,
                           attribution=_attribution_lines(a.attribution), progress=not a.quiet)
    _print_manifest(manifest)
    for note in manifest.get("info", {}).get("scaled_pages", [])[:10]:
        print("note:", note)
    return 0


def _data_select(a: argparse.Namespace) -> int:
    from htr_tf.data.select import lines_over_cer, select_lines

    drop = lines_over_cer(a.report, a.max_cer)
    m = select_lines(a.data, a.out, drop, split=a.split,
                     reason=f"line: CER above {a.max_cer:g} in {os.path.basename(a.report)}")
    _print_manifest(m)
    return 0


def _print_manifest(m: dict) -> None:
    for kind in ("lines", "forms"):
        for split, e in sorted(m.get(kind, {}).items()):
            print(f"{kind:6s} {split:16s} {e['count']:7d}")
    for reason, n in m.get("skipped", {}).items():
        print(f"skipped {n:6d}  {reason}")
    if m.get("unknown_chars"):
        print("characters outside the charset:", " ".join(f"{c!r}x{n}" for c, n in m["unknown_chars"].items()))


def _parse_pages(s: str) -> list[str]:
    out: list[str] = []
    for part in s.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-")
            out += [str(i) for i in range(int(a), int(b) + 1)]
        elif part:
            out.append(part)
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="get and convert data: IAM, synthetic IAM-format forms, GW")
    ds = p.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    q = ds.add_parser("iam-download", help="download the IAM database with your IAM account")
    q.add_argument("--credentials", help="JSON file with username and password "
                   "(else IAM_USERNAME / IAM_PASSWORD from the environment)")
    q.add_argument("--out", required=True, help="IAM directory to create or resume")
    q.add_argument("--base-url", default=None, help="server root (default: the IAM server)")
    q.add_argument("--parts", nargs="*", default=None, help="only these parts (default: all)")
    q.add_argument("--auth", choices=["form", "basic"], default="form",
                   help="form: the current IAM site's login form (default); basic: HTTP basic "
                        "auth of the original server and its mirrors")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=_data_iam_download)

    q = ds.add_parser("iam-prepare", help="IAM directory -> form and line TFRecords")
    q.add_argument("--iam", required=True, help="IAM directory (iam-download's or synth's layout)")
    q.add_argument("--out", required=True, help="record set directory to write")
    q.add_argument("--per-shard", type=int, default=2000)
    q.add_argument("--unknown", choices=["error", "drop", "replace", "skip"], default="skip",
                   help="a line with characters outside the charset: skip it (counted), or "
                        "drop/replace the characters")
    q.add_argument("--skip-err", action="store_true", help="leave out lines whose segmentation is 'err'")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=_data_iam_prepare)

    from htr_tf.commands.synth import add_parsers as add_synth_parsers

    add_synth_parsers(ds)  # synth (v1/v2 forms, v2 lines) and fonts

    q = ds.add_parser("gw-prepare", help="George Washington pages -> page and line TFRecords")
    q.add_argument("--gw", required=True, help="directory with images/, locations/, transcription.txt")
    q.add_argument("--out", required=True)
    q.add_argument("--train-pages", type=_parse_pages, default=_parse_pages("270-277"))
    q.add_argument("--val-pages", type=_parse_pages, default=_parse_pages("278-279"))
    q.add_argument("--test-pages", type=_parse_pages, default=[])
    q.add_argument("--crop", choices=["masked", "pipeline", "derived"], default="masked",
                   help="line images masked by their word polygons (default); cut as the page pipeline "
                        "cuts them from line boxes (pipeline: --line-crop box); or by the polygon the "
                        "pipeline derives from the line box and the ink (derived: --line-crop polygon). "
                        "The last two train on what real pages look like")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=_data_gw_prepare)

    from htr_tf.data.xml_gt import CROPS, MARKUP_PRESETS  # no TensorFlow behind these

    q = ds.add_parser("xml-prepare", help="PAGE XML / ALTO pages (Transkribus, eScriptorium, kraken) -> "
                                          "line and page TFRecords")
    q.add_argument("--xml", nargs="+", required=True, metavar="DIR_OR_GLOB",
                   help="XML files, directories (searched recursively) or globs")
    q.add_argument("--images", default=None, help="directory of the page images (default: beside the XML, "
                                                  "or ../images); found by the name the XML gives, else its stem")
    q.add_argument("--out", required=True, help="record set directory to write (atomically)")
    q.add_argument("--source", default="", help="source name stored in every record (default: xml)")
    q.add_argument("--markup", choices=sorted(MARKUP_PRESETS), default="none",
                   help="the source's transcription markup: lines with crossed-out or unreadable text are "
                        "skipped, insertion/superscript marks removed (see htr_tf/data/xml_gt.py)")
    q.add_argument("--split-file", nargs="*", default=[], metavar="SPLIT=FILE",
                   help="page ids (file stems), one a line, per split; pages in none are skipped")
    q.add_argument("--split-hash", default="", metavar="validation=0.05,test=0.05",
                   help="without split files: document-level stable hash splits (default 5%% / 5%%)")
    q.add_argument("--crop", choices=list(CROPS), default="masked",
                   help="masked: cut by the line polygon (default); box: plain box crop (neighbours' ink "
                        "shows, as in users' line images); pipeline: box with neighbours' ink painted out "
                        "(the page pipeline's --line-crop box); derived: cut by the polygon the page "
                        "pipeline derives from the line boxes and the ink (its default --line-crop polygon)")
    q.add_argument("--writer", default="", help="writer key of every line (default: the page's document)")
    q.add_argument("--charset", default="latin", help="iam | latin | FILE (default: latin)")
    q.add_argument("--attribution", action="append", default=[], metavar="TEXT",
                   help="attribution the data's licence asks for (CC BY): stored in the records and "
                        "carried into every model trained on them (repeatable; @FILE reads one a line)")
    q.add_argument("--per-shard", type=int, default=2000)
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=_data_xml_prepare)

    q = ds.add_parser("select", help="copy a record set without the lines a recogniser reads with a very high "
                                     "CER (transcriptions that do not describe the ink)")
    q.add_argument("--data", required=True, help="record set to copy")
    q.add_argument("--report", required=True, help="`htr evaluate recognizer --report` JSON of that set's split")
    q.add_argument("--split", default="train", help="the split the report is of (default: train)")
    q.add_argument("--max-cer", type=float, default=0.5, help="drop lines above this CER (fraction; default 0.5)")
    q.add_argument("--out", required=True, help="new record set directory")
    q.set_defaults(func=_data_select)


