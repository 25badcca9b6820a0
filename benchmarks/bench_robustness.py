"""How the recogniser reads the same lines framed loosely, faded, skewed, small, slanted or binarised; prints JSON.

Users hand the recogniser line images cut by other tools and scanned from other paper: often
with generous blank margins, often with faint ink on darker paper, often written or cut at a
slant.  This reads a record split's lines

- as they are and with blank paper added around them (``--pads``: above and below, as a
  fraction of the crop height; half that left and right), with the geometry's margin trimming
  (:func:`htr_tf.geometry.trim_margins`) on and off;
- with their gray levels remapped (``--fades``: ``PAPER:INK`` pairs) so that the paper (the
  crop's 90th percentile) becomes ``PAPER`` and the darkest ink (its 1st percentile) ``INK``,
  as faded ink or a dark scan would give (read as lines are read: trimmed, and levelled when
  the geometry says ``deskew``);
- rotated (``--rotations``: degrees, + counter-clockwise) in a box grown to hold them, as a
  skewed line is cut, and read as lines are read;
- scanned at a lower resolution (``--scales``: each crop shrunk by that factor, area
  averaging), as photographed or 150 dpi pages give;
- slanted (``--slants``: tan of the extra slant, + leans right) and stretched (``--stretches``:
  width factors), as writers differ;
- binarised (``--binarize``: Otsu's threshold, ink 0 and paper 255), as many collections ship
  their lines;

and prints greedy CER for each.  ``--deskew on|off`` reads with the geometry's ``deskew`` set
(:func:`htr_tf.geometry.frame_line`) whatever the model says, ``--reread-density`` and ``--reread-sparse`` its
rules for reading dense lines again wider and sparse ones narrower
(:func:`htr_tf.recognize.reread_lines`)::

    python benchmarks/bench_robustness.py --data RECORDS --split validation [--model DIR]
        [--pads 0,0.5,1] [--fades 200:130,150:60] [--rotations 1,-2,3] [--scales 0.5,0.33]
        [--slants=-0.3,0.3] [--stretches 0.7,1.4] [--binarize] [--deskew model|on|off]
        [--reread-density 0.45] [--reread-sparse 0.3]
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


def fade(crop, paper: float, ink: float):
    """``crop`` with its paper level (90th percentile) mapped to ``paper`` and its darkest ink
    (1st percentile) to ``ink``, linearly; a flat crop only has its level moved."""
    import numpy as np

    x = np.asarray(crop, np.float32)
    p0, i0 = np.percentile(x, 90), np.percentile(x, 1)
    scale = (paper - ink) / max(p0 - i0, 1.0)
    return np.clip(np.rint(paper + (x - p0) * scale), 0, 255).astype(np.uint8)


def rotate(crop, degrees: float):
    """``crop`` rotated by ``degrees`` (counter-clockwise) in a box grown to hold it, on paper."""
    import math

    import cv2
    import numpy as np

    h, w = crop.shape
    a = math.radians(degrees)
    nw = int(abs(w * math.cos(a)) + abs(h * math.sin(a))) + 2
    nh = int(abs(h * math.cos(a)) + abs(w * math.sin(a))) + 2
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    m[0, 2] += (nw - w) / 2
    m[1, 2] += (nh - h) / 2
    return cv2.warpAffine(crop, m, (nw, nh), borderValue=int(np.percentile(crop, 90)), flags=cv2.INTER_LINEAR)


def shrink(crop, factor: float):
    """``crop`` scaled by ``factor`` (< 1) with area averaging, at least 8 pixels high."""
    import cv2

    h, w = crop.shape
    nh = max(8, int(round(h * factor)))
    nw = max(8, int(round(w * nh / h)))
    return cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_AREA)


def slant(crop, shear: float):
    """``crop`` sheared by ``shear`` (``dx = -shear * dy`` about the middle row; + leans right)
    in a box grown to hold it, on paper."""
    import cv2
    import numpy as np

    h, w = crop.shape
    grow = int(abs(shear) * h) + 2
    m = np.array([[1.0, -shear, shear * h / 2 + grow / 2], [0.0, 1.0, 0.0]])
    return cv2.warpAffine(crop, m, (w + grow, h), borderValue=int(np.percentile(crop, 90)), flags=cv2.INTER_LINEAR)


def stretch(crop, factor: float):
    """``crop`` with its width scaled by ``factor`` (narrower or wider writing), height kept."""
    import cv2

    h, w = crop.shape
    nw = max(8, int(round(w * factor)))
    return cv2.resize(crop, (nw, h), interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def binarize(crop):
    """``crop`` thresholded by Otsu's method: ink 0, paper 255."""
    import cv2

    return cv2.threshold(crop, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1]


def parse_fades(text: str) -> list[tuple[float, float]]:
    """``"200:130,150:60"`` -> ``[(200, 130), (150, 60)]``; SystemExit naming a bad pair."""
    out = []
    for part in filter(None, (t.strip() for t in text.split(","))):
        try:
            paper, ink = (float(v) for v in part.split(":"))
        except ValueError:
            raise SystemExit(f"--fades: {part!r} is not PAPER:INK (two gray levels, e.g. 200:130)") from None
        if not 0 <= ink < paper <= 255:
            raise SystemExit(f"--fades: {part!r} needs 0 <= INK < PAPER <= 255")
        out.append((paper, ink))
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="line record set")
    p.add_argument("--split", default="validation")
    p.add_argument("--model", default=None, help="recogniser bundle (default: the bundled one)")
    p.add_argument("--pads", default="0,0.5,1", help="comma-separated margins to add (fractions of the height)")
    p.add_argument("--fades", default="200:130,150:60",
                   help="comma-separated PAPER:INK gray levels to remap the lines to ('' for none)")
    p.add_argument("--rotations", default="1,-2,3", help="comma-separated rotations in degrees ('' for none)")
    p.add_argument("--scales", default="", help="comma-separated shrink factors, e.g. 0.5,0.33 ('' for none)")
    p.add_argument("--slants", default="", help="comma-separated extra slants (tan), e.g. -0.3,0.3 ('' for none)")
    p.add_argument("--stretches", default="", help="comma-separated width factors, e.g. 0.7,1.4 ('' for none)")
    p.add_argument("--binarize", action="store_true", help="also read the lines binarised (Otsu)")
    p.add_argument("--deskew", choices=("model", "on", "off"), default="model",
                   help="level skewed lines as the model's geometry says (model) or always/never")
    p.add_argument("--reread-density", type=float, default=None,
                   help="read dense lines again wider above this many characters a frame (0: never; "
                        "default: as the model's geometry says)")
    p.add_argument("--reread-sparse", type=float, default=None,
                   help="read sparse lines again narrower below this many characters a frame (0: never; "
                        "default: as the model's geometry says)")
    p.add_argument("--variants", default=None,
                   help="views each line is read in (htr_tf.readings: 'none' for one reading; default: as "
                        "the model's htr.json says)")
    p.add_argument("--limit", type=int, default=None)
    a = p.parse_args(argv)
    fades = parse_fades(a.fades)

    import jiwer
    import numpy as np

    from htr_tf.bundle import require_bundled
    from htr_tf.data.records import RecordSet
    from htr_tf.fileio import decode_image
    from htr_tf.models import Recognizer
    from htr_tf.readings import resolve_variants
    from htr_tf.recognize import recognize_crops

    model = Recognizer.load(a.model or require_bundled("recognizer"))
    import dataclasses

    if a.deskew != "model":
        model.geometry = dataclasses.replace(model.geometry, deskew=a.deskew == "on")
    if a.reread_density is not None:
        model.geometry = dataclasses.replace(model.geometry, reread_density=a.reread_density)
    if a.reread_sparse is not None:
        model.geometry = dataclasses.replace(model.geometry, reread_sparse=a.reread_sparse)
    refs, crops = [], []
    for ex in RecordSet(a.data).iter_lines(a.split):
        if a.limit is not None and len(refs) >= a.limit:
            break
        refs.append(ex["text"])
        crops.append(np.asarray(decode_image(ex["image"], ex["id"])))

    def cer(images, trim: bool = True) -> float:
        hyps = [d.text for d in recognize_crops(model, images, batch_size=32, trim=trim, variants=a.variants)]
        return round(100 * jiwer.cer(refs, hyps), 2)

    framing = []
    for pad in (float(v) for v in a.pads.split(",") if v.strip()):
        framed = [add_margins(c, pad) if pad > 0 else c for c in crops]
        framing.append({"pad": pad, "cer_as_is": cer(framed, trim=False), "cer_trimmed": cer(framed)})
    contrast = [{"paper": pa, "ink": ink, "cer": cer([fade(c, pa, ink) for c in crops])} for pa, ink in fades]
    rotation = [{"degrees": d, "cer": cer([rotate(c, d) for c in crops])}
                for d in (float(v) for v in a.rotations.split(",") if v.strip())]
    resolution = [{"scale": f, "cer": cer([shrink(c, f) for c in crops])}
                  for f in (float(v) for v in a.scales.split(",") if v.strip())]
    slants = [{"slant": t, "cer": cer([slant(c, t) for c in crops])}
              for t in (float(v) for v in a.slants.split(",") if v.strip())]
    stretches = [{"stretch": f, "cer": cer([stretch(c, f) for c in crops])}
                 for f in (float(v) for v in a.stretches.split(",") if v.strip())]
    binarized = {"cer": cer([binarize(c) for c in crops])} if a.binarize else None
    out = {"benchmark": "robustness", "data": a.data, "split": a.split, "lines": len(refs),
           "model": a.model or "bundled", "geometry": model.geometry.to_dict(),
           "variants": list(resolve_variants(a.variants, model.decoding)),
           "framing": framing, "contrast": contrast, "rotation": rotation, "resolution": resolution,
           "slant": slants, "stretch": stretches, "binarized": binarized}
    json.dump(out, sys.stdout, indent=1)
    print()
    return out


if __name__ == "__main__":
    main()
