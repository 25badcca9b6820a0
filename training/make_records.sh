#!/usr/bin/env bash
# Rebuild every record set the recogniser recipes (recognizer-*.yaml) read, from nothing but
# ../shared/data and the generator, into OUT (default data/records): one command for a fresh
# machine, since record sets (CC BY 4.0 real data, GBs of synthetic lines) never enter the
# repository. Needs the fonts of training/install_fonts.sh for the synthetic v2 lines to come out
# the same. Two lanes run side by side (one per core); a set that already exists is kept, so a
# killed run picks up where it stopped (each set is written to a temporary name and renamed).
#
# Usage: training/make_records.sh [OUT] [SHARED_DATA]
#   OUT          default data/records
#   SHARED_DATA  default ../shared/data
# Time on this 2-core CPU: about 30 minutes (synthetic v2 lines are most of it).
#
# copiste-{masked,box}-sel drop the copiste training lines that a model reads above 80 % CER
# (page numbers and one-word lines whose text is not what is written). The first sets were
# selected with the stage-1 model of recognizer-real.yaml, which no longer exists; this script
# selects with the bundled recogniser (SELECT_MODEL overrides), so the dropped lines can differ.
# It reads each line once (--variants none): the bundle reads five views by default, 5x slower.
set -euo pipefail
OUT=${1:-data/records}
SHARED=${2:-../shared/data}
SELECT_MODEL=${SELECT_MODEL:-htr_tf/assets/models/recognizer}
HTR=${HTR:-htr}
PYTHON=${PYTHON:-python}
R=$SHARED/real-train
mkdir -p "$OUT"

have() { [ -e "$OUT/$1/manifest.json" ]; }   # sets are renamed into place whole, manifest included
# A synthetic v2 line set counts only when the generator's revision drew it (revision 2 stopped
# turning a sixteenth of the lines to speckle, docs/synthetic-data.md); an older one is moved
# aside to NAME.rN, not deleted, and drawn again.
have_synth() {
  have "$1" || return 1
  local rev
  rev=$($PYTHON -c "import json, sys
from htr_tf.data.synth_lines import stale_revision_note
m = json.load(open(sys.argv[1]))
print('ok' if stale_revision_note(m) is None else m['info'].get('synth_revision', 1))" "$OUT/$1/manifest.json")
  [ "$rev" = ok ] && return 0
  step "$1 was drawn by synthetic v2 revision $rev: moved to $1.r$rev, drawn again"
  mv "$OUT/$1" "$OUT/$1.r$rev"
  return 1
}
step() { echo "[$(date +%H:%M:%S)] $*" >&2; }

real() {  # real() NAME-PREFIX CROP
  local name=$1 crop=$2
  case $name in
    copiste) set -- --xml "$R/copiste/xml" --source copiste --markup copiste \
               --attribution @training/attribution/copiste.txt \
               --split-file "train=$R/splits/copiste-train.txt" \
               "validation=$R/splits/copiste-validation.txt" "test=$R/splits/copiste-test.txt" ;;
    peraire) set -- --xml "$R/peraire/xml" --source peraire --markup peraire --writer peraire \
               --attribution @training/attribution/peraire.txt \
               --split-file "train=$R/splits/peraire-train.txt" \
               "validation=$R/splits/peraire-validation.txt" "test=$R/splits/peraire-test.txt" ;;
    cremma)  set -- --xml "$R/cremma-mss-20/xml" --source cremma-mss-20 --markup cremma \
               --split-hash validation=0,test=0 \
               --attribution @training/attribution/cremma-mss-20.txt ;;
  esac
  have "$name-$crop" || { step "xml-prepare $name --crop $crop"
    $HTR data xml-prepare "$@" --crop "$crop" --out "$OUT/$name-$crop" --quiet; }
}

lane_a() {
  for crop in masked box; do real copiste $crop; real peraire $crop; real cremma $crop; done
  have gw || { step "gw-prepare"; $HTR data gw-prepare --gw "$SHARED/gw" --out "$OUT/gw" --quiet; }
  have gw-pipe || { step "gw-prepare --crop pipeline"
    $HTR data gw-prepare --gw "$SHARED/gw" --out "$OUT/gw-pipe" --crop pipeline --quiet; }
  have synth || { step "synth v1 forms"
    local tmp; tmp=$(mktemp -d "$OUT/.synth-iam.XXXX")
    $HTR data synth --pages 800 --seed 1 --out "$tmp/iam"
    $HTR data iam-prepare --iam "$tmp/iam" --out "$OUT/synth" --quiet
    rm -rf "$tmp"; }
  have synth-v2-forms || { step "synth v2 forms"
    local tmp; tmp=$(mktemp -d "$OUT/.synth-v2-iam.XXXX")
    $HTR data synth --pages 300 --style v2 --seed 1414 --out "$tmp/iam"
    $HTR data iam-prepare --iam "$tmp/iam" --out "$OUT/synth-v2-forms" --quiet
    rm -rf "$tmp"; }
  have gw-derived || { step "gw-prepare --crop derived"
    $HTR data gw-prepare --gw "$SHARED/gw" --out "$OUT/gw-derived" --crop derived --quiet; }
  real peraire derived
  real copiste derived
}

lane_b() {
  have_synth synth-v2 || { step "synth v2 lines 0-5999"
    $HTR data synth --lines 6000 --seed 2 --out "$OUT/synth-v2"; }
  have_synth synth-v2-ext || { step "synth v2 lines 6000-21999"
    $HTR data synth --lines 16000 --start 6000 --seed 2 --lines-per-writer 20 \
      --out "$OUT/synth-v2-ext"; }
  have_synth synth-v2-lmheld || { step "synth v2 lines for decoder tuning (training/lm.md)"
    local held; held=$(mktemp "$OUT/.heldout.XXXX")
    $PYTHON -c "import sys; from htr_tf.data.text import load_sentences; from htr_tf.decode.lm import split_heldout
open(sys.argv[1], 'w').write(''.join(s + chr(10) for s in split_heldout(load_sentences())[1]))" "$held"
    $HTR data synth --lines 500 --french 0 --text "$held" --seed 77 --out "$OUT/synth-v2-lmheld"
    rm -f "$held"; }
}

lane_a & a=$!
lane_b & b=$!
wait $a; wait $b

for crop in masked box; do
  have copiste-$crop-sel && continue
  report=$OUT/.copiste-train-report.json
  [ -e "$report" ] || { step "read copiste train with $SELECT_MODEL"
    $HTR evaluate recognizer --model "$SELECT_MODEL" --data "$OUT/copiste-masked" --split train --variants none \
      --report "$report.tmp" --quiet && mv "$report.tmp" "$report"; }
  step "select copiste-$crop (--max-cer 0.8)"
  $HTR data select --data "$OUT/copiste-$crop" --report "$report" --max-cer 0.8 \
    --out "$OUT/copiste-$crop-sel"
done
step "done: $(ls "$OUT" | tr '\n' ' ')"
