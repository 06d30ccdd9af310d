#!/usr/bin/env bash
# One chain round (8 epochs of AAM-softmax on pseudo-labels) from the demo run's SimCLR + SSPS model of one
# seed, with the given clustering overrides, then its dev cross-session EER (docs/experiments.md, section 7).
#   bash benchmarks/ablate_chain.sh NAME SEED [pseudo.KEY=VALUE ...]
#   e.g. bash benchmarks/ablate_chain.sh S90 0 pseudo.criterion=count pseudo.speakers=90
# TRAIN_EXTRA="method.supervised.subcenters=3" (comma-separated) adds overrides of the supervised training.
# Reads runs/pl3/simclr_ssps_sSEED/latest.pt (from `ssps demo --out runs/pl3 ...`) and data/default (or $CORPUS).
set -euo pipefail
NAME=${1:?usage: ablate_chain.sh NAME SEED [pseudo.KEY=VALUE ...]}
SEED=${2:?usage: ablate_chain.sh NAME SEED [pseudo.KEY=VALUE ...]}
shift 2
D=${CORPUS:-data/default}
PY=${PY:-.venv/bin/python}
OUT=runs/abl/chain_${NAME}_s${SEED}
EXTRA=${TRAIN_EXTRA:+,$TRAIN_EXTRA}
export OMP_NUM_THREADS=1
$PY -m ssps chain configs/chain.yaml init="runs/pl3/simclr_ssps_s${SEED}/latest.pt" train_manifest="$D/train.tsv" rounds=1 \
  "overrides=[data.val_trials=$D/trials/dev_cross_session.txt,data.val_root=$D/wav,train.validate_every=1000,train.steps_per_epoch=25,train.epochs=8,train.seed=$SEED,train.threads=1,method.supervised.margin_warmup_epochs=2$EXTRA]" \
  pseudo.clusters=150 pseudo.seed="$SEED" final_labels=false "$@" --out "$OUT"
$PY -m ssps eval "$OUT/round_1/train/latest.pt" "$D/trials/dev_cross_session.txt" --data "$D/wav" --out "$OUT/eval_dev"
