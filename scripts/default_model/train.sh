#!/usr/bin/env bash
# The bundled model 2.0.0: fine-tune 1.1.0 on phantoms with confounders and the real series,
# once with every real patient (the shipped model) and once per held-out patient (the check).
#   scripts/default_model/train.sh SHARED WORK
# SHARED holds realct/ and realct-train/; WORK gets the CSVs, the phantom validation set,
# the slice cache (data/) and one run per model (runs/all, runs/wo_<patient>).
# Took about 6 min per run on 2 CPU cores (after the first run fills the cache, ~15 min).
set -euo pipefail
SHARED=$(realpath "$1"); WORK=$2
IV=${IV:-ivcontrast}
here=$(dirname "$(realpath "$0")")
mkdir -p "$WORK/runs"; cd "$WORK"
python3 "$here/folds.py" "$SHARED" .
[ -f val/manifest.csv ] || $IV synth val -n 60 --seed 2100000 --slices 24 -j 2
COMMON=(--val-data val/manifest.csv --init-from default --synthetic 200 --synthetic-seed 2000000
  --synthetic-slices 24 --synthetic-slabs 0.3 --epochs 2 --samples-per-epoch 2560 --lr 0.0005
  --freeze-blocks 3 --batch-size 32 --patience 2 --threads 2 -j 2 --name ivcontrast-default
  --weights-dtype float16)
run() {  # name labels.csv
  [ -f "runs/$1/done" ] && return 0
  $IV --data-dir data train "$2" "${COMMON[@]}" --model-version "2.0.0-$1" -o "runs/$1" \
    > "runs/$1.log" 2>&1
  touch "runs/$1/done"
}
run all train_all.csv
for p in $(cat patients.txt); do run "wo_$p" "train_wo_$p.csv"; done
