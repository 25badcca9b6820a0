"""`htr lm`: build n-gram language models and tune LM decoding on a validation set."""

from __future__ import annotations

import argparse
import json
import sys


def _parse_list(kind: type, s: str) -> list:
    try:
        return [kind(x) for x in s.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}s, got {s!r}") from None


def _load_charset(spec: str | None):
    """``--charset``: a recognizer bundle directory, a charset JSON file, or the default."""
    from pathlib import Path

    from htr_tf.charset import DEFAULT_CHARSET, Charset
    from htr_tf.errors import ConfigError

    if spec is None:
        return DEFAULT_CHARSET
    p = Path(spec)
    if p.is_dir():
        from htr_tf.models.recognizer import Recognizer

        return Charset.from_dict(Recognizer.read_metadata(p)["charset"])
    if not p.exists():
        raise ConfigError(f"{p}: no such charset file or recognizer bundle")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        return Charset.from_dict(d.get("charset", d))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{p}: not a charset JSON file: {e}") from None


def _lm_build(a: argparse.Namespace) -> int:
    from htr_tf.decode.lm import build_lm, find_kenlm_tools

    if a.index and a.no_lexicon:
        from htr_tf.errors import ConfigError

        raise ConfigError("--index needs the lexicon: drop --no-lexicon")
    charset = _load_charset(a.charset)
    order = a.order if a.order is not None else (6 if a.char else 4)
    tools = find_kenlm_tools()
    est = a.estimator
    if not a.quiet:
        use = "lmplz" if est == "lmplz" or (est == "auto" and "lmplz" in tools) else "own Kneser-Ney estimator"
        print(f"building a {'char' if a.char else 'word'} {order}-gram with {use} -> {a.out}", file=sys.stderr)
    meta = build_lm(a.out, order, "char" if a.char else "word", text=a.text, charset=charset,
                    prune=a.prune, unknown=a.unknown, heldout_every=a.holdout_every, estimator=est,
                    memory=a.memory, lexicon=not a.no_lexicon, progress=not a.quiet, language=a.language)
    if a.index:
        from htr_tf.decode.lexicon import LexiconCorrector, index_beside
        from htr_tf.decode.lm import lm_sidecars

        lex = lm_sidecars(a.out)["lexicon"]
        path = LexiconCorrector(lex, lm=None).build_index(index_beside(lex))
        print(f"{path}: lexicon search index")
    stats = meta["text_stats"]
    print(f"{a.out}: {meta['kind']} {meta['order']}-gram, n-grams {meta['ngrams']}, "
          f"{meta['bytes'] / 1e6:.2f} MB, {meta['lines']} lines / {meta['words']} words / "
          f"{meta['vocabulary']} word types, {meta['seconds']} s ({meta['estimator']})")
    if stats["skipped_lines"] or stats["dropped_chars"]:
        print(f"  characters outside the charset: {stats['skipped_lines']} lines skipped "
              f"{stats['chars_in_skipped_lines']}, dropped {stats['dropped_chars']}")
    if meta["heldout_lines"]:
        print(f"  held out {meta['heldout_lines']} lines (every {meta['heldout_every']}th)")
    return 0


def _lm_tune(a: argparse.Namespace) -> int:
    from htr_tf.lm_tune import tune_decoder

    grid = {}
    for name in ("lm_weight", "word_score", "beam_width", "unk_score", "sil_score"):
        vals = getattr(a, name)
        if vals:
            grid[name] = vals
    fixed = {}
    if a.lm:
        fixed["lm"] = a.lm
    if a.lexicon:
        fixed["lexicon"] = a.lexicon
    if a.workers is not None:
        fixed["workers"] = a.workers
    result = tune_decoder(a.model, a.data, split=a.split, decoder=a.decoder, grid=grid, fixed=fixed,
                          limit=a.limit, batch_size=a.batch_size, metric=a.metric,
                          progress=not a.quiet, table=sys.stdout)
    print(json.dumps(result["best"], sort_keys=True))
    if a.out:
        from htr_tf.fileio import atomic_write_text

        atomic_write_text(a.out, json.dumps(result, indent=2) + "\n")
    if a.save:
        from htr_tf.lm_tune import save_tuned_decoder

        entry = save_tuned_decoder(a.model, result)
        print(f"{a.model}/htr.json: {a.decoder} now defaults to {json.dumps(entry['options'], sort_keys=True)}",
              file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lm", help="build and tune n-gram language models")
    ls = p.add_subparsers(dest="lm_command", metavar="COMMAND", required=True)

    q = ls.add_parser("build", help="build a word or character n-gram LM (ARPA or KenLM binary)")
    q.add_argument("--text", nargs="+", default=None, metavar="FILE",
                   help=".txt, .txt.gz or nltk brown.zip files, one sentence a line "
                        "(default: the bundled Brown extract)")
    q.add_argument("--order", type=int, default=None, help="n-gram order (default 4 for words, 6 for --char)")
    q.add_argument("--char", action="store_true",
                   help="a character LM (tokens are the charset's characters, '|' for the space)")
    q.add_argument("--out", required=True, help="LM.arpa, LM.arpa.gz, or LM.bin (needs build_binary)")
    q.add_argument("--prune", type=lambda s: _parse_list(int, s), default=[0], metavar="T1,T2,...",
                   help="count thresholds per order, lmplz-style (e.g. 0,0,1,1 prunes singleton 3- and 4-grams)")
    q.add_argument("--charset", default=None, metavar="MODEL|JSON",
                   help="recognizer bundle (or charset JSON) whose charset the text is normalised to "
                        "(default: the IAM charset)")
    q.add_argument("--unknown", choices=["skip", "drop", "error"], default="skip",
                   help="a line with characters outside the charset: skip it (default), drop them, or fail")
    q.add_argument("--holdout-every", type=int, default=0, metavar="K",
                   help="leave out every K-th line (kept for evaluation; the bundled LM uses 20)")
    q.add_argument("--estimator", choices=["auto", "lmplz", "python"], default="auto",
                   help="lmplz (when on PATH, the default) or the own modified Kneser-Ney estimator")
    q.add_argument("--memory", default="200M", help="lmplz -S (default 200M)")
    q.add_argument("--no-lexicon", action="store_true", help="do not write the NAME.lexicon.tsv.gz sidecar")
    q.add_argument("--index", action="store_true",
                   help="also build the lexicon search index (NAME.hnsw) beside the lexicon")
    q.add_argument("--language", default=None, metavar="CODE",
                   help="the text's language (en, fr), kept in the metadata: the LM decoders then keep "
                        "the greedy reading of lines in another language (default: none said)")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=_lm_build)

    q = ls.add_parser("tune", help="grid search of LM decoding weights on a validation set")
    q.add_argument("--model", required=True, help="recognizer bundle directory")
    q.add_argument("--data", required=True, help="line record set")
    q.add_argument("--split", default="validation")
    q.add_argument("--decoder", default="beam+lm", help="beam+lm (default), beam+charlm, beam+lm+lexicon")
    q.add_argument("--lm", default=None, help="LM file (default: the decoder's bundled LM)")
    q.add_argument("--lexicon", default=None, help="lexicon file (default: the LM's sidecar)")
    q.add_argument("--lm-weight", type=lambda s: _parse_list(float, s), default=None, metavar="A1,A2,..",
                   help="alpha values (default 0.5,1,1.5,2,3)")
    q.add_argument("--word-score", type=lambda s: _parse_list(float, s), default=None, metavar="B1,B2,..",
                   help="beta values (default -1,0,1,2; beam+lm only)")
    q.add_argument("--beam-width", type=lambda s: _parse_list(int, s), default=None, metavar="K1,..",
                   help="beam widths (default 50)")
    q.add_argument("--unk-score", type=lambda s: _parse_list(float, s), default=None, metavar="U1,..")
    q.add_argument("--sil-score", type=lambda s: _parse_list(float, s), default=None, metavar="S1,..")
    q.add_argument("--metric", choices=["cer", "wer"], default="cer", help="what the best setting minimises")
    q.add_argument("--limit", type=int, default=None, help="only the first N lines of the split")
    q.add_argument("--batch-size", type=int, default=32)
    q.add_argument("--workers", default=None, help="decoder processes (default 1; 'auto': one per core)")
    q.add_argument("--out", default=None, help="also write the full result (every setting) as JSON")
    q.add_argument("--save", action="store_true",
                   help="write the best setting into the model's htr.json (key 'decoding', with what it "
                        "was tuned on): ocr, evaluate, the pipeline and every export then use it for this "
                        "decoder unless options override it")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=_lm_tune)
