#!/usr/bin/env bash
# Each held-out patient's series through its fold's model (ivcontrast classify: network,
# physics opinion and review), and the shipped model on all ten; then the table.
#   scripts/default_model/check.sh WORK [REVIEW_BAND]
set -euo pipefail
WORK=$1; BAND=${2:-0.1}
IV=${IV:-ivcontrast}
here=$(dirname "$(realpath "$0")")
cd "$WORK"
for p in $(cat patients.txt); do
  [ -f "runs/wo_$p/done" ] || continue
  [ -s "runs/wo_$p/heldout.json" ] && continue
  mapfile -t paths < <(tail -n +2 "heldout_$p.csv" | cut -d, -f1)
  $IV --set "classifier.review_band=$BAND" classify "${paths[@]}" --model "runs/wo_$p/model" \
    --format json -q > "runs/wo_$p/heldout.json"
done
if [ -f runs/all/done ] && [ ! -s runs/all/real.json ]; then
  mapfile -t paths < <(tail -n +2 realct.csv | cut -d, -f1)
  $IV --set "classifier.review_band=$BAND" classify "${paths[@]}" --model runs/all/model \
    --format json -q > runs/all/real.json
fi
python3 "$here/table.py" .
