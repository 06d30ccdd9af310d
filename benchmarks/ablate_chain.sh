#!/usr/bin/env bash
# One chain round (8 epochs of AAM-softmax on pseudo-labels) from a demo run's SimCLR + SSPS model of one
# seed, with the given clustering overrides, then its dev cross-session EER (docs/experiments.md, section 7).
#   bash benchmarks/ablate_chain.sh NAME SEED [pseudo.KEY=VALUE ...]
#   e.g. bash benchmarks/ablate_chain.sh S90 0 pseudo.criterion=count pseudo.speakers=90
# NAME=truelabels trains the same 8 epochs on the TRUE speakers instead (not label-free: the chain's ceiling).
# TRAIN_EXTRA="method.supervised.subcenters=3" (comma-separated) adds overrides of the supervised training; the
# instance term that configs/chain.yaml and the demo's chain rows turn on is off here unless TRAIN_EXTRA has
# method.supervised.instance_weight=1.0 (docs/experiments.md, section 20).
# FROM=runs/w reads FROM/simclr_ssps_sSEED/latest.pt (default runs/pl3, from `ssps demo --out runs/pl3 ...`);
# BACKEND=1 also fits the label-free scoring back-end (ssps backend) and scores dev and test with and without
# it. ROUNDS=R runs R chain rounds and scores the last (finished rounds already in OUT are skipped, so copying
# a round-1 folder to OUT first trains only the new ones). Corpus: data/default (or $CORPUS).
set -euo pipefail
NAME=${1:?usage: ablate_chain.sh NAME SEED [pseudo.KEY=VALUE ...]}
SEED=${2:?usage: ablate_chain.sh NAME SEED [pseudo.KEY=VALUE ...]}
shift 2
D=${CORPUS:-data/default}
PY=${PY:-.venv/bin/python}
FROM=${FROM:-runs/pl3}
ROUNDS=${ROUNDS:-1}
OUT=runs/abl/chain_${NAME}_s${SEED}
TRAIN="data.val_trials=$D/trials/dev_cross_session.txt,data.val_root=$D/wav,train.validate_every=1000"
TRAIN+=",train.steps_per_epoch=25,train.epochs=8,train.seed=$SEED,train.threads=1,method.supervised.margin_warmup_epochs=2"
TRAIN+=${TRAIN_EXTRA:+,$TRAIN_EXTRA}
export OMP_NUM_THREADS=1
if [ "$NAME" = truelabels ]; then
  MODEL=$OUT/latest.pt
  $PY -m ssps train configs/supervised.yaml data.train_manifest="$D/train.tsv" ${TRAIN//,/ } \
    train.init="$FROM/simclr_ssps_s${SEED}/latest.pt" --out "$OUT"
else
  MODEL=$OUT/round_$ROUNDS/train/latest.pt
  $PY -m ssps chain configs/chain.yaml init="$FROM/simclr_ssps_s${SEED}/latest.pt" train_manifest="$D/train.tsv" \
    rounds="$ROUNDS" "overrides=[$TRAIN]" pseudo.clusters=150 pseudo.seed="$SEED" final_labels=false "$@" --out "$OUT"
fi
if [ "${BACKEND:-0}" = 1 ]; then
  CORPUS=$D PY=$PY bash "$(dirname "$0")/score_both.sh" "$MODEL" "$OUT"
else
  $PY -m ssps eval "$MODEL" "$D/trials/dev_cross_session.txt" --data "$D/wav" --out "$OUT/eval_dev"
fi
