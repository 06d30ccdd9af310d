#!/usr/bin/env bash
# A model's dev and test cross-session EER, by cosine and after the label-free scoring back-end fitted on
# the training audio (ssps backend): OUT/backend.npz, OUT/eval_{dev,test}[_wccn]/results.json.
#   bash benchmarks/score_both.sh MODEL OUT        (used by ablate_chain.sh and extend_chain.sh)
set -euo pipefail
MODEL=${1:?usage: score_both.sh MODEL OUT}
OUT=${2:?usage: score_both.sh MODEL OUT}
D=${CORPUS:-data/default}
PY=${PY:-.venv/bin/python}
$PY -m ssps backend "$MODEL" --manifest "$D/train.tsv" --out "$OUT/backend.npz"
for split in dev test; do
  list=cross_session.txt
  [ "$split" = dev ] && list=dev_cross_session.txt
  $PY -m ssps eval "$MODEL" "$D/trials/$list" --data "$D/wav" --out "$OUT/eval_$split"
  $PY -m ssps eval "$MODEL" "$D/trials/$list" --data "$D/wav" --backend "$OUT/backend.npz" --out "$OUT/eval_${split}_wccn"
done
