"""Benchmark CTC decoders on synthetic posteriors; prints JSON (one thread)."""
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
from htr_tf.charset import Charset
from htr_tf.decode import get_decoder
import jiwer

def synth(n, T, cs, rng):
    C = cs.num_classes
    refs, lps, lens = [], np.zeros((n, T, C), np.float32), np.zeros(n, np.int32)
    for b in range(n):
        L = rng.integers(10, T // 3)
        ids = rng.integers(1, C, L)
        refs.append(cs.decode(ids))
        frames = np.sort(rng.choice(np.arange(T - 8), L, replace=False)) + 4
        logits = rng.normal(0, 1.0, (T, C))
        logits[:, 0] += 6.0
        for f, c in zip(frames, ids):
            logits[f, c] += rng.uniform(5.0, 10.0)
            if rng.random() < 0.3:
                logits[f, rng.integers(1, C)] += rng.uniform(0, 9.0)   # a confusable rival
        n_valid = T - rng.integers(0, 16)
        lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        lps[b], lens[b] = lp, n_valid
    return refs, lps, lens

rng = np.random.default_rng(0)
cs = Charset()
T = int(sys.argv[1]) if len(sys.argv) > 1 else 128
refs, lp, ln = synth(500, T, cs, rng)
out = {"lines": 500, "frames": T, "classes": cs.num_classes, "results": []}
for name, opts, n in [("greedy", {}, 500), ("beam", {"beam_width": 10}, 200),
                      ("beam", {"beam_width": 10, "backend": "tf"}, 200),
                      ("beam", {"beam_width": 50}, 100), ("beam", {"beam_width": 50, "backend": "tf"}, 100)]:
    d = get_decoder(name, **opts)
    d.decode(lp[:4], ln[:4], cs)
    reps = 15 if name == "greedy" else 3
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        res = d.decode(lp[:n], ln[:n], cs)
        times.append(time.perf_counter() - t0)
    dt = min(times)
    hyps = [r.text for r in res]
    out["results"].append({"decoder": name, **d.options(), "lines": n, "lines_per_s": round(n / dt, 1),
                           "cer": round(100 * jiwer.process_characters(refs[:n], hyps).cer, 2)})
print(json.dumps(out, indent=1))
