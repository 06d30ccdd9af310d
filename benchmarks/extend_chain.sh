#!/usr/bin/env bash
# A demo chain row continued by more rounds, then scored on dev and test by cosine and after the label-free
# back-end (docs/experiments.md, section 19). Copies FROM/simclr_ssps_pl_sSEED (made by `ssps demo ... --rows
# ...,simclr_ssps_pl --rounds 1`) to runs/abl/chain_rROUNDS_sSEED and reruns its own command with
# rounds=ROUNDS: the finished rounds are skipped, the new ones trained.
#   FROM=runs/w bash benchmarks/extend_chain.sh SEED [ROUNDS=2]
set -euo pipefail
SEED=${1:?usage: extend_chain.sh SEED [ROUNDS]}
ROUNDS=${2:-2}
D=${CORPUS:-data/default}
PY=${PY:-.venv/bin/python}
FROM=${FROM:-runs/w}
OUT=runs/abl/chain_r${ROUNDS}_s${SEED}
rm -rf "$OUT"
mkdir -p runs/abl
cp -r "$FROM/simclr_ssps_pl_s$SEED" "$OUT"
export OMP_NUM_THREADS=1
# The job's recorded command (job.json), with rounds=ROUNDS and the new folder.
mapfile -t CMD < <($PY - "$FROM/simclr_ssps_pl_s$SEED/job.json" "$OUT" "$ROUNDS" <<'PY'
import json, sys
job, out, rounds = sys.argv[1:]
cmd = [f"rounds={rounds}" if c.startswith("rounds=") else c for c in json.load(open(job))["command"]]
cmd[cmd.index("--out") + 1] = out
print("\n".join(cmd))
PY
)
"${CMD[@]}" > "$OUT/extend.log" 2>&1
CORPUS=$D PY=$PY bash "$(dirname "$0")/score_both.sh" "$OUT/round_$ROUNDS/train/latest.pt" "$OUT"
