#!/usr/bin/env bash
# One label-free chain round from a SimCLR + SSPS checkpoint with a fixed number S of pseudo-speakers
# (S = K = 150: no merging), then its dev cross-session EER (docs/experiments.md, section 7).
#   bash benchmarks/ablate_chain_s.sh S [SEED] [CORPUS]   (starts from runs/pl3/simclr_ssps_sSEED/latest.pt)
set -euo pipefail
S=${1:?usage: ablate_chain_s.sh S [SEED] [CORPUS]}
SEED=${2:-0}
D=${3:-data/default}
INIT=runs/pl3/simclr_ssps_s${SEED}/latest.pt
PY=${PY:-.venv/bin/python}
OUT=runs/abl/chain_S${S}_s${SEED}
export OMP_NUM_THREADS=1
$PY -m ssps chain configs/chain.yaml init="$INIT" train_manifest="$D/train.tsv" rounds=1 \
  "overrides=[data.val_trials=$D/trials/dev_cross_session.txt,data.val_root=$D/wav,train.validate_every=1000,train.steps_per_epoch=25,train.epochs=8,train.seed=$SEED,train.threads=1,method.supervised.margin_warmup_epochs=2]" \
  pseudo.clusters=150 pseudo.criterion=count pseudo.speakers="$S" pseudo.seed="$SEED" final_labels=false --out "$OUT"
$PY -m ssps eval "$OUT/round_1/train/latest.pt" "$D/trials/dev_cross_session.txt" --data "$D/wav" --out "$OUT/eval_dev"
