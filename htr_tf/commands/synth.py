"""`htr data synth` (v1 forms, v2 forms or v2 line records) and `htr data fonts`.

Kept apart from ``htr_tf/commands/data.py``: :func:`add_parsers` adds both subcommands to
``htr data``'s subparsers.  Only the standard library is imported at the top.
"""

from __future__ import annotations

import argparse


def _data_synth(a: argparse.Namespace) -> int:
    from htr_tf.errors import DataError

    if a.lines is not None:
        if a.pages is not None:
            raise DataError("give --lines (line records) or --pages (IAM-format forms), not both")
        if a.style == "v1":
            raise DataError("--lines is a v2 mode; v1 writes forms only (--pages)")
        from htr_tf.data.synth_lines import synthesize_lines

        s = synthesize_lines(a.out, lines=a.lines, seed=a.seed, workers=a.workers, fonts_dir=a.fonts,
                             system_fonts=not a.bundled_fonts_only, text=a.text,
                             lines_per_writer=a.lines_per_writer, p_french=a.french, p_pen=a.pen,
                             start=a.start, progress=not a.quiet)
        for split, n in s["splits"].items():
            print(f"lines  {split:16s} {n:7d}")
        print(f"{s['lines']} lines in {s['seconds']:.1f} s ({s['lines_per_s']} lines/s), "
              f"{s['fonts']} fonts, writers drawn by {s['writers']}")
        return 0
    if a.pages is None:
        raise DataError("give --pages N (IAM-format forms) or --lines N (line records)")
    from htr_tf.data.synth import synthesize

    kw = {}
    if a.style == "v2":  # --pages defaults to v1
        kw = {"style": "v2", "system_fonts": not a.bundled_fonts_only, "p_pen": a.pen}
    synthesize(a.out, pages=a.pages, seed=a.seed, fonts_dir=a.fonts, text=a.text,
               workers=a.workers, progress=not a.quiet, start=a.start, **kw)
    return 0


def _data_fonts(a: argparse.Namespace) -> int:
    from htr_tf.data.fonts import debian_install_line, font_sources
    from htr_tf.data.strokes import HERSHEY_FONTS

    sources, notes = font_sources(include_system=not a.bundled_fonts_only, fonts_dir=a.fonts)
    if a.check:
        from htr_tf.data.synth import inspect_font
        from htr_tf.data.synth_lines import load_v2_fonts

        usable = {f.path: f for f in load_v2_fonts(a.fonts, not a.bundled_fonts_only)}
    for s in sources:
        status = ""
        if a.check:
            f = usable.get(s.path)
            if f is None:
                r = inspect_font(s.path)
                status = f"left out: {r}" if isinstance(r, str) else "left out"
            else:
                status = "ok" + (f" (fallback for {f.missing})" if f.missing else "")
        print(f"{s.origin:34s} {s.licence:10s} {s.path}" + (f"  {status}" if status else ""))
    for name in HERSHEY_FONTS:
        print(f"{'bundled stroke (Hershey)':34s} {'Hershey':10s} {name}.jhf")
    for n in notes:
        print(f"missing: {n}")
    if notes:
        print(f"install the Debian ones with: {debian_install_line()}")
    print(f"{len(sources)} font files + {len(HERSHEY_FONTS)} stroke fonts")
    return 0


def add_parsers(ds: argparse._SubParsersAction) -> None:
    """Add ``synth`` and ``fonts`` to ``htr data``'s subcommands."""
    q = ds.add_parser("synth", help="synthetic handwriting: IAM-format forms (--pages) or line records (--lines)")
    q.add_argument("--pages", type=int, default=None, help="write this many IAM-format forms")
    q.add_argument("--lines", type=int, default=None,
                   help="write this many lines as a line record set (lines-train/validation/test; v2)")
    q.add_argument("--out", required=True, help="IAM directory (--pages) or record set directory (--lines)")
    q.add_argument("--style", choices=["v1", "v2"], default=None,
                   help="generator version for --pages: v1 (12 bundled fonts, as before; default, so old "
                        "sets can be remade) or v2 (all fonts, pen simulator, paper); --lines is always v2")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--start", type=int, default=0, help="first page/line index (to extend a set)")
    q.add_argument("--fonts", default=None, help="directory of .ttf/.otf fonts instead of the default sources")
    q.add_argument("--bundled-fonts-only", action="store_true",
                   help="v2: only the bundled fonts (not the installed Debian/PyPI ones)")
    q.add_argument("--text", default=None, help="English text file or brown.zip (default: bundled Brown extract)")
    q.add_argument("--french", type=float, default=0.5,
                   help="--lines: share of French lines (default 0.5; v2 forms are English, as IAM)")
    q.add_argument("--pen", type=float, default=0.35,
                   help="v2: share of writers drawn by the stroke simulator (default 0.35)")
    q.add_argument("--lines-per-writer", type=int, default=20, help="--lines: consecutive lines by one writer")
    q.add_argument("--workers", type=int, default=1)
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=_data_synth)

    q = ds.add_parser("fonts", help="list the handwriting fonts synth uses and where each comes from")
    q.add_argument("--fonts", default=None, help="list this directory instead (checked against the reserved list)")
    q.add_argument("--bundled-fonts-only", action="store_true")
    q.add_argument("--check", action="store_true", help="also load each font and say whether it is used")
    q.set_defaults(func=_data_fonts)


def main(argv: list[str] | None = None) -> int:
    """``python -m htr_tf.commands.synth synth|fonts ...`` (the same as ``htr data ...``)."""
    import sys

    from htr_tf.errors import HTRError

    p = argparse.ArgumentParser(prog="htr data")
    add_parsers(p.add_subparsers(dest="data_command", metavar="COMMAND", required=True))
    a = p.parse_args(argv)
    try:
        return int(a.func(a) or 0)
    except HTRError as e:
        print(f"htr: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
