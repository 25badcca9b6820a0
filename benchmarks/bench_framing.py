"""How the recogniser reads the same lines framed tightly and loosely; prints JSON.

Users hand the recogniser line images cut by other tools, often with generous blank margins.
This reads a record split's lines as they are and with blank paper added around them
(``--pads``: above and below, as a fraction of the crop height; half that left and right),
with the geometry's margin trimming (:func:`htr_tf.geometry.trim_margins`) on and off, and
prints greedy CER for each::

    python benchmarks/bench_framing.py --data RECORDS --split validation [--model DIR] [--pads 0,0.5,1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def add_margins(crop, pad: float):
    """``crop`` with ``pad`` x its height of paper above and below and half that left and right."""
    import cv2
    import numpy as np

    h = crop.shape[0]
    py, px = int(h * pad), int(h * pad / 2)
    paper = int(np.percentile(crop, 90))
    return cv2.copyMakeBorder(crop, py, py, px, px, cv2.BORDER_CONSTANT, value=paper)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="line record set")
    p.add_argument("--split", default="validation")
    p.add_argument("--model", default=None, help="recogniser bundle (default: the bundled one)")
    p.add_argument("--pads", default="0,0.5,1", help="comma-separated margins to add (fractions of the height)")
    p.add_argument("--limit", type=int, default=None)
    a = p.parse_args(argv)

    import jiwer
    import numpy as np

    from htr_tf.bundle import require_bundled
    from htr_tf.data.records import RecordSet
    from htr_tf.fileio import decode_image
    from htr_tf.models import Recognizer
    from htr_tf.recognize import recognize_crops

    model = Recognizer.load(a.model or require_bundled("recognizer"))
    refs, crops = [], []
    for ex in RecordSet(a.data).iter_lines(a.split):
        if a.limit is not None and len(refs) >= a.limit:
            break
        refs.append(ex["text"])
        crops.append(np.asarray(decode_image(ex["image"], ex["id"])))
    rows = []
    for pad in (float(v) for v in a.pads.split(",")):
        framed = [add_margins(c, pad) if pad > 0 else c for c in crops]
        row = {"pad": pad}
        for trim in (False, True):
            hyps = [d.text for d in recognize_crops(model, framed, batch_size=32, trim=trim)]
            row["cer_trimmed" if trim else "cer_as_is"] = round(100 * jiwer.cer(refs, hyps), 2)
        rows.append(row)
    out = {"benchmark": "framing", "data": a.data, "split": a.split, "lines": len(refs),
           "model": a.model or "bundled", "geometry": model.geometry.to_dict(), "results": rows}
    json.dump(out, sys.stdout, indent=1)
    print()
    return out


if __name__ == "__main__":
    main()
