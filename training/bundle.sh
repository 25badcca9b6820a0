#!/usr/bin/env bash
# Make a chosen recogniser candidate (a soup: `htr train average ... --out DIR`, checked with
# training/validate.sh) the bundled one:
#   1. its model.keras and htr.json replace htr_tf/assets/models/recognizer's (MODEL_CARD.md
#      stays: edit it by hand), each written to a temporary name and renamed;
#   2. the decoder weights are re-tuned on synth-v2-lmheld (training/lm.md), never on test;
#   3. the views the bundle was read in before are recorded again (htr.json decoding.variants:
#      the candidate's htr.json has none), with what they were chosen on;
#   4. the TFLite model is re-exported (it carries htr.json, the views included).
# Usage: training/bundle.sh CANDIDATE "DESCRIPTION OF HOW IT WAS MADE" [RECORDS]
set -euo pipefail
C=${1:?usage: training/bundle.sh CANDIDATE DESCRIPTION [RECORDS]}
DESC=${2:?a description of the candidate (htr.json info.init)}
RECORDS=${3:-data/records}
HTR=${HTR:-htr}
PYTHON=${PYTHON:-python}
B=htr_tf/assets/models/recognizer
step() { echo "[$(date +%H:%M:%S)] $*" >&2; }

step "copy $C into $B"
old_variants=$($PYTHON -c "import json, sys; print(json.dumps(json.load(open(sys.argv[1])).get('decoding', {}).get('variants')))" "$B/htr.json")
cp "$C/model.keras" "$B/.model.keras.tmp" && mv "$B/.model.keras.tmp" "$B/model.keras"
$PYTHON - "$C/htr.json" "$B/htr.json" "$DESC" <<'PY'
import json, os, sys
src, dst, desc = sys.argv[1:4]
meta = json.load(open(src))
meta.pop("decoding", None)                        # re-tuned below for these weights
meta.setdefault("info", {})["init"] = desc
tmp = dst + ".tmp"
with open(tmp, "w") as f:
    json.dump(meta, f, indent=2, ensure_ascii=False)
os.replace(tmp, dst)
PY

step "tune beam+lm on synth-v2-lmheld"
$HTR lm tune --model "$B" --data "$RECORDS/synth-v2-lmheld" --split train --decoder beam+lm \
    --lm-weight 0.15,0.25,0.4,0.6,0.8,1.0 --word-score 0,1,2 --save --quiet
step "tune beam+charlm on synth-v2-lmheld"
$HTR lm tune --model "$B" --data "$RECORDS/synth-v2-lmheld" --split train --decoder beam+charlm \
    --lm-weight 0.5,0.75,1.0,1.5 --sil-score=-1,0 --save --quiet

step "record the views"
$PYTHON - "$B" "$old_variants" <<'PY'
import json, sys
from htr_tf.readings import DEFAULT_VARIANTS, save_bundle_variants
bundle, old = sys.argv[1], json.loads(sys.argv[2])
if old:
    tuned = {k: v for k, v in (old.get("tuned") or {}).items() if not k.startswith("this_bundle")}
    print(save_bundle_variants(bundle, old["options"]["views"], tuned))
else:
    print(save_bundle_variants(bundle, DEFAULT_VARIANTS, {"chosen_on": "validation (training/README.md)"}))
PY

step "re-export TFLite"
$HTR tflite recognizer --quantize dynamic --out htr_tf/assets/models/tflite/recognizer.tflite
step "done: now read the test splits and pages (README.md, Results) and edit $B/MODEL_CARD.md"
