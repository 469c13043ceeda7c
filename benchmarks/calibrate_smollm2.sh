#!/usr/bin/env bash
# Calibration of v*, MEMIT's λ and AlphaEdit's null space on SmolLM2-135M, on held-out
# cases only: the last 100 records of counterfact_portability_gpt4.json (offset 931), which the sequential
# table (benchmarks/sequential_smollm2.sh) never edits (it takes at most the first 900). counterfact-val.json
# is never used. Each configuration is one `editkit run` into OUT/<stage>/<name>; a finished one is skipped, an
# interrupted one is resumed, so the script can be rerun until it prints "done". Summaries:
#   .venv/bin/python benchmarks/seq_table.py OUT/vstar/*     (v* diagnostics per configuration)
#   .venv/bin/python benchmarks/seq_table.py OUT/seq/*
# Stage vstar: one batch of 20 held-out requests, MEMIT, layers 4-8: the share of requests whose v* loss ends
# below 0.7 and Eff/Gen/Spe, for the v* learning rate, steps and clamp. Stage seq: 100 held-out edits in two
# sequential batches of 50 with the chosen v* (VSTAR below, set after stage vstar): MEMIT's λ, the null-space
# threshold (absolute 2e-2 as published, or a share of C0's energy) and its L2, with retention of the facts the
# model knows (benchmarks/known_probes.py).
# Usage: benchmarks/calibrate_smollm2.sh [OUT]   (about 2 h on one CPU core)
# ONLY="name ..." runs only the named configurations (e.g. two instances, one per core, on disjoint sets).
set -uo pipefail
OUT=${1:-runs/calib-smollm2}
DATA=${DATA:-../shared/data/real}
EDITKIT=${EDITKIT:-.venv/bin/editkit}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
CF="$DATA/counterfact_portability_gpt4.json"
# early_stop_loss 0.3: the smollm2-facts calibration's stop, given here since a dataset's calibrated settings apply
# only when that dataset is edited (these runs read --requests)
COMMON=(--model smollm2-135m --requests "$CF" --offset 931 --layers 4-8 --set early_stop_loss=0.3
        --corpus "$DATA/wikipedia_vital_leads_en.jsonl:text" --stats-max-tokens 100000 --quiet)

source "$(dirname "$0")/run_or_resume.sh"
run() { run_or_resume "$@"; }

[ -f "$OUT/known_probes.json" ] || "$PY" benchmarks/known_probes.py --facts "$DATA/known_1000.json" \
    --out "$OUT/known_probes.json"

mkdir -p "$OUT/vstar"
V=(--num-edits 20 --batch-size 20 --editor memit --metrics counterfact)
run "$OUT/vstar/lr0.1-s25" "${V[@]}" --set v_lr=0.1 --set v_steps=25
run "$OUT/vstar/lr0.5-s25" "${V[@]}" --set v_lr=0.5 --set v_steps=25
run "$OUT/vstar/lr1-s25" "${V[@]}" --set v_lr=1.0 --set v_steps=25
run "$OUT/vstar/lr0.5-s40" "${V[@]}" --set v_lr=0.5 --set v_steps=40
run "$OUT/vstar/lr0.5-s25-clamp2" "${V[@]}" --set v_lr=0.5 --set v_steps=25 --set clamp_norm=2

VSTAR=(--set v_lr=${V_LR:-0.5} --set v_steps=${V_STEPS:-25})
mkdir -p "$OUT/seq"
S=(--num-edits 100 --batch-size 50 --metrics counterfact,retention --retention-probes "$OUT/known_probes.json")
run "$OUT/seq/memit-lambda15000" "${S[@]}" --editor memit "${VSTAR[@]}"
run "$OUT/seq/memit-lambda5000" "${S[@]}" --editor memit "${VSTAR[@]}" --set mom2_weight=5000
run "$OUT/seq/memit-lambda1000" "${S[@]}" --editor memit "${VSTAR[@]}" --set mom2_weight=1000
run "$OUT/seq/nullspace-t2e-2-l2-10" "${S[@]}" --editor memit --constraint nullspace "${VSTAR[@]}"
run "$OUT/seq/nullspace-t2e-2-l2-1" "${S[@]}" --editor memit --constraint nullspace "${VSTAR[@]}" \
    --set nullspace.l2=1
run "$OUT/seq/nullspace-e0.01-l2-10" "${S[@]}" --editor memit --constraint nullspace "${VSTAR[@]}" \
    --set nullspace.energy=0.01
run "$OUT/seq/nullspace-e0.05-l2-10" "${S[@]}" --editor memit --constraint nullspace "${VSTAR[@]}" \
    --set nullspace.energy=0.05
echo "=== done $(date +%T)"
