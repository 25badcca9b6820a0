#!/usr/bin/env bash
# Read a recogniser candidate (a bundle, a soup) on the eight validation splits the recipes are
# chosen by, greedy CER and WER one line each: copiste masked / box / derived, peraire masked / box,
# GW 278-279, synthetic v2 and synthetic v1 validation1. Never the test splits: those are read
# once a candidate is chosen (README.md, *Results*).
#
# Usage: training/validate.sh MODEL [EXTRA ARGS of `htr evaluate recognizer`...]
#   e.g.   training/validate.sh runs/P19 --variants none     (one reading)
#          training/validate.sh htr_tf/assets/models/recognizer   (the views its htr.json names)
# RECORDS (default data/records) holds the sets of training/make_records.sh.
set -euo pipefail
MODEL=${1:?usage: training/validate.sh MODEL [ARGS...]}
shift
RECORDS=${RECORDS:-data/records}
HTR=${HTR:-htr}
for spec in copiste-masked:validation copiste-box:validation copiste-derived:validation \
            peraire-masked:validation peraire-box:validation gw:validation synth-v2:validation \
            synth:validation1; do
  data=${spec%%:*} split=${spec##*:}
  line=$($HTR evaluate recognizer --model "$MODEL" --data "$RECORDS/$data" --split "$split" --quiet "$@" 2>/dev/null)
  printf '%-18s %s\n' "$data" "$line"
done
