"""CTC decoder speed and accuracy on synthetic posteriors; prints JSON.

The posteriors are noisy, sharpened one-hot CTC paths of real sentences that the bundled
LMs never saw (the held-out lines of the bundled Brown extract, see
``htr_tf.decode.lm.HELDOUT_EVERY``).  Each character lasts 1-3 frames followed by 0-2 blank
frames (about 3 frames a character, like the recogniser at width downsampling 8);
every frame gets Gaussian logit noise; with probability ``--confuse`` a character's frames
put their peak on a similar-looking character (a confusion table from shapes: ``e/c/o``,
``l/1/I`` ...) or a random one, with the true character a close second.  ``--noise`` and
``--confuse`` are set so greedy decoding lands near the CER of a real model.

Decoders: greedy; ``beam+lm`` (flashlight LexiconDecoder + word 4-gram) at each
``--beams`` width, against pyctcdecode with the same LM and the same emissions; ``beam+charlm``
(char 6-gram); ``lexicon`` and ``beam+lm+lexicon``.  Each runs on one process and on
``--workers`` processes.  CER/WER are pooled over all lines (jiwer).  pyctcdecode's
``alpha`` is set to ``lm_weight / ln 10`` and its ``beta`` to ``word_score`` so both use
the same weights.

    python benchmarks/bench_decoders.py [--lines 500] [--beams 10,50,100] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from typing import Any, Sequence

import numpy as np

#: Characters that a handwriting recogniser tends to confuse with each other.
CONFUSABLE = ["ecoa", "il1I|", "nmu", "rnv", "hbk", "gqy9", "O0oQD", "S5s", "Z2z", "B8", "tf",
              "CcG", "Uu", "Vv", "Ww", "Xx", "Kk", "Pp", ".,", ";:", "'\"", "-_"]


def synthetic_posteriors(texts: Sequence[str], charset: Any, seed: int = 0, noise: float = 1.0,
                         confuse: float = 0.07, peak: float = 6.0
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Log-softmax posteriors ``[B, T, C]`` (float32) and lengths ``[B]`` for ``texts``."""
    rng = np.random.default_rng(seed)
    C = charset.num_classes
    groups = {}
    for g in CONFUSABLE:
        for c in g:
            if c in charset:
                groups.setdefault(c, [x for x in g if x != c and x in charset])
    paths, fuzz = [], []
    for text in texts:
        ids = charset.encode(text, policy="drop")
        path: list[int] = []
        wrong: list[int] = []
        for i in ids:
            d = int(rng.integers(1, 4))
            w = 0
            if rng.random() < confuse:
                c = charset.chars[i - 1]
                alts = groups.get(c)
                w = (charset.chars.index(rng.choice(alts)) + 1 if alts and rng.random() < 0.7
                     else int(rng.integers(1, C)))
            path += [i] * d
            wrong += [w] * d
            nb = int(rng.integers(0, 3))
            path += [0] * nb
            wrong += [0] * nb
        paths.append(np.array(path or [0], np.int64))
        fuzz.append(np.array(wrong or [0], np.int64))
    T = max(len(p) for p in paths)
    lengths = np.array([len(p) for p in paths], np.int64)
    logits = rng.normal(0.0, noise, (len(texts), T, C)).astype(np.float32)
    for b, (p, w) in enumerate(zip(paths, fuzz)):
        n = len(p)
        logits[b, np.arange(n), p] += peak
        hit = np.flatnonzero(w > 0)
        # a confused character: the wrong one peaks, the true one is a close second
        logits[b, hit, w[hit]] += peak + rng.uniform(0.5, 2.0, hit.size).astype(np.float32)
        logits[b, n:, 0] += peak
    m = logits.max(-1, keepdims=True)
    lp = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
    return lp.astype(np.float32), lengths


def wrap_lines(sentences: Sequence[str], width: int = 50) -> list[str]:
    """Sentences word-wrapped into lines of at most ``width`` characters (an IAM line's length)."""
    out: list[str] = []
    for s in sentences:
        line = ""
        for w in s.split():
            if line and len(line) + 1 + len(w) > width:
                out.append(line)
                line = w
            else:
                line = f"{line} {w}" if line else w
        if line:
            out.append(line)
    return out


# -- running -------------------------------------------------------------------------------------
def _machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for mod in ("numpy", "kenlm", "flashlight-text", "pyctcdecode", "hnswlib", "jiwer"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod)
        except Exception:
            versions[mod] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "packages": versions}


def _score(refs: Sequence[str], hyps: Sequence[str]) -> dict[str, float]:
    import jiwer

    return {"cer": round(100 * jiwer.cer(list(refs), list(hyps)), 2),
            "wer": round(100 * jiwer.wer(list(refs), list(hyps)), 2)}


def _timed(fn, n: int) -> tuple[list[str], float]:
    t0 = time.perf_counter()
    hyps = fn()
    dt = time.perf_counter() - t0
    return hyps, dt


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=500)
    p.add_argument("--beams", default="10,50,100")
    p.add_argument("--char-beams", default="10,50", help="beam widths for beam+charlm (slower)")
    p.add_argument("--workers", type=int, default=2, help="processes for the multi-core runs")
    p.add_argument("--noise", type=float, default=1.0)
    p.add_argument("--confuse", type=float, default=0.07)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-pyctcdecode", action="store_true")
    p.add_argument("--out", default=None, help="also write the JSON here")
    a = p.parse_args(argv)

    from htr_tf.charset import Charset
    from htr_tf.data.text import load_sentences
    from htr_tf.decode import get_decoder
    from htr_tf.decode.lm import BUNDLED_WORD_LM, HELDOUT_EVERY, lm_sidecars, read_lexicon, split_heldout

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    cs = Charset()
    _, held = split_heldout(load_sentences(), HELDOUT_EVERY)
    refs = wrap_lines(held)[: a.lines]
    lp, ln = synthetic_posteriors(refs, cs, a.seed, a.noise, a.confuse)
    beams = [int(x) for x in a.beams.split(",") if x]
    char_beams = [int(x) for x in a.char_beams.split(",") if x]
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []

    def record(name: str, hyps: list[str], dt: float, **extra: Any) -> None:
        row = {"decoder": name, **extra, "lines_per_second": round(len(refs) / dt, 1), **_score(refs, hyps)}
        rows.append(row)
        log(json.dumps(row))

    hyps, dt = _timed(lambda: [x.text for x in get_decoder("greedy").decode(lp, ln, cs)], len(refs))
    record("greedy", hyps, dt, processes=1)

    def run_decoder(name: str, beam: int, workers: int, **opts: Any) -> None:
        dec = get_decoder(name, beam_width=beam, workers=workers, **opts)
        t0 = time.perf_counter()
        dec.warm_up(cs) if hasattr(dec, "warm_up") else dec.base.warm_up(cs)
        warm = time.perf_counter() - t0
        hyps, dt = _timed(lambda: [x.text for x in dec.decode(lp, ln, cs)], len(refs))
        dec.close()
        record(name, hyps, dt, beam=beam, processes=workers, warm_up_seconds=round(warm, 2),
               **{k: v for k, v in dec.options().items() if k in ("lm_weight", "word_score", "unk_score",
                                                                    "beam_size_token", "beam_threshold")})

    for beam in beams:
        for workers in (1, a.workers):
            run_decoder("beam+lm", beam, workers)
    if not a.no_pyctcdecode:
        from pyctcdecode import build_ctcdecoder

        labels = [""] + list(cs.chars)
        words = list(read_lexicon(lm_sidecars(BUNDLED_WORD_LM)["lexicon"]))
        lm_weight, word_score = get_decoder("beam+lm").options()["lm_weight"], 0.0
        settings = {"same weights": (lm_weight / math.log(10), word_score), "pyctcdecode defaults": (0.5, 1.0)}
        for tag, (alpha, beta) in settings.items():
            t0 = time.perf_counter()
            dec = build_ctcdecoder(labels, kenlm_model_path=str(BUNDLED_WORD_LM), unigrams=words,
                                   alpha=alpha, beta=beta)
            warm = time.perf_counter() - t0
            for beam in beams if tag == "same weights" else beams[:1]:
                hyps, dt = _timed(lambda: [" ".join(dec.decode(lp[b, : ln[b]], beam_width=beam).split())
                                           for b in range(len(refs))], len(refs))
                record("pyctcdecode", hyps, dt, beam=beam, processes=1, setting=tag, alpha=round(alpha, 4),
                       beta=beta, warm_up_seconds=round(warm, 2))
    for beam in char_beams:
        for workers in (1, a.workers):
            run_decoder("beam+charlm", beam, workers)
    # lexicon search (index built/cached before timing)
    from htr_tf.decode.lexicon import LexiconCorrector

    t0 = time.perf_counter()
    LexiconCorrector()._get_index()
    index_seconds = time.perf_counter() - t0
    dec = get_decoder("lexicon")
    dec.decode(lp[:2], ln[:2], cs)
    hyps, dt = _timed(lambda: [x.text for x in dec.decode(lp, ln, cs)], len(refs))
    record("lexicon", hyps, dt, processes=1)
    for workers in (1, a.workers):
        run_decoder("beam+lm+lexicon", beams[0], workers)

    def find(name: str, beam: int, processes: int) -> dict[str, Any] | None:
        for r in rows:
            if r["decoder"] == name and r.get("beam") == beam and r["processes"] == processes \
                    and r.get("setting", "same weights") == "same weights":
                return r
        return None

    speedups = []
    for beam in beams:
        ours1, ours2, theirs = find("beam+lm", beam, 1), find("beam+lm", beam, a.workers), find("pyctcdecode", beam, 1)
        if ours1 and theirs:
            speedups.append({"beam": beam,
                             "one_process_x": round(ours1["lines_per_second"] / theirs["lines_per_second"], 1),
                             f"{a.workers}_processes_x": round(ours2["lines_per_second"] / theirs["lines_per_second"], 1)
                             if ours2 else None,
                             "wer_ours": ours1["wer"], "wer_pyctcdecode": theirs["wer"],
                             "cer_ours": ours1["cer"], "cer_pyctcdecode": theirs["cer"]})
    result = {
        "benchmark": "ctc_decoders", "lines": len(refs), "mean_frames": round(float(ln.mean()), 1),
        "classes": cs.num_classes,
        "posteriors": {"noise": a.noise, "confuse": a.confuse, "seed": a.seed,
                       "text": f"held-out lines of the bundled Brown extract (every {HELDOUT_EVERY}th sentence), "
                               "wrapped at 50 characters"},
        "lm": {"word": str(BUNDLED_WORD_LM.name), "lexicon_index_seconds": round(index_seconds, 2)},
        "machine": {**_machine(), "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "results": rows, "speedup_vs_pyctcdecode": speedups,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        from htr_tf.fileio import atomic_write_text

        atomic_write_text(a.out, text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
