#!/usr/bin/env bash
# Calibration of v* and of MEMIT's λ / AlphaEdit's null space on Qwen2.5-Coder-1.5B-Instruct (or
# MODEL=qwen2.5-coder-0.5b), on held-out cases only: records from offset 931 of counterfact_portability_gpt4.json,
# which the model's batch of 100 (benchmarks/qwen_cpu.sh, the first 100 records) never edits, as SmolLM2's
# calibration (benchmarks/calibrate_smollm2.sh). counterfact-val.json is never used. Reduced for this CPU (a v*
# request costs ~40 s here against ~1 s on SmolLM2): 20 requests for v*, 40 for the solve.
#
# Stage vstar: one batch of 20 held-out requests, MEMIT λ 15000, layers 4-8 (the causal trace's early band, the
# authors' layers for Qwen2.5-7B): the share of requests whose v* loss ends below 0.7, the steps taken, Eff/Gen/Spe
# and seconds per edit, for the v* learning rate (the authors' 0.1 against SmolLM2's 0.5).
# Stage seq: 40 held-out edits in two sequential batches of 20 with the v* chosen (V_LR, V_STEPS): MEMIT's λ and
# AlphaEdit's published null space, with retention of the first 300 facts the model knows (of the 749 that
# benchmarks/known_probes.py finds; 300 to keep each run under an hour).
# Every configuration is one `editkit run` into OUT/<stage>/<name>; a finished one is skipped, an interrupted one
# resumed, so the script can be rerun until it prints "done". ONLY="name ..." runs only the named ones (two
# instances on disjoint sets use both cores). Summaries:
#   .venv/bin/python benchmarks/seq_table.py OUT/vstar/* OUT/seq/*
# Usage: OMP_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=131072 benchmarks/calibrate_qwen.sh [OUT]   (needs `make models`)
set -uo pipefail
OUT=${1:-runs/calib-qwen}
DATA=${DATA:-../shared/data/real}
EDITKIT=${EDITKIT:-.venv/bin/editkit}
PY=${PY:-.venv/bin/python}
MODEL=${MODEL:-qwen2.5-coder-1.5b}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
CF="$DATA/counterfact_portability_gpt4.json"
# the authors' Qwen2.5-7B settings (AlphaEdit configs/qwen2.5-7b.json) but for what each stage varies
COMMON=(--model "$MODEL" --device cpu --requests "$CF" --offset 931 --layers 4-8
        --set clamp_norm=0.75 --set kl_factor=0.0625 --set v_weight_decay=0.5 --set early_stop_loss=0.05
        --corpus "$DATA/wikipedia_vital_leads_en.jsonl:text" --stats-max-tokens 100000 --quiet)

source "$(dirname "$0")/run_or_resume.sh"
run() { run_or_resume "$@"; }

if [ ! -f "$OUT/known_probes.json" ]; then
  [ -f "$OUT/known_all.json" ] || "$PY" benchmarks/known_probes.py --model "$MODEL" --facts "$DATA/known_1000.json" \
      --out "$OUT/known_all.json" || exit 2
  "$PY" -c 'import json, sys; json.dump(json.load(open(sys.argv[1]))[:300], open(sys.argv[2], "w"))' \
      "$OUT/known_all.json" "$OUT/known_probes.json.tmp" && mv "$OUT/known_probes.json.tmp" "$OUT/known_probes.json"
fi

mkdir -p "$OUT/vstar"
V=(--num-edits 20 --batch-size 20 --editor memit --metrics counterfact --set mom2_weight=15000)
run "$OUT/vstar/lr0.1-s25" "${V[@]}" --set v_lr=0.1 --set v_steps=25
run "$OUT/vstar/lr0.5-s25" "${V[@]}" --set v_lr=0.5 --set v_steps=25

VSTAR=(--set v_lr="${V_LR:-0.5}" --set v_steps="${V_STEPS:-25}")  # stage vstar: lr 0.5 as good as 0.1, in 8.6 steps against 19.4
mkdir -p "$OUT/seq"
S=(--num-edits 40 --batch-size 20 --metrics counterfact,retention --retention-probes "$OUT/known_probes.json")
run "$OUT/seq/memit-lambda15000" "${S[@]}" --editor memit "${VSTAR[@]}" --set mom2_weight=15000
run "$OUT/seq/nullspace-t2e-2-l2-10" "${S[@]}" --editor memit --constraint nullspace "${VSTAR[@]}" \
    --set mom2_weight=15000
run "$OUT/seq/memit-lambda5000" "${S[@]}" --editor memit "${VSTAR[@]}" --set mom2_weight=5000
run "$OUT/seq/memit-lambda50000" "${S[@]}" --editor memit "${VSTAR[@]}" --set mom2_weight=50000
run "$OUT/seq/memit-lambda1000" "${S[@]}" --editor memit "${VSTAR[@]}" --set mom2_weight=1000
echo "=== done $(date +%T)"
