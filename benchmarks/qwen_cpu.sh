#!/usr/bin/env bash
# A larger real model edited on the CPU: Qwen2.5-Coder-1.5B-Instruct (or MODEL=qwen2.5-coder-0.5b), one batch of 100
# CounterFact edits (the first 100 records of counterfact_portability_gpt4.json, as SmolLM2's sequential table),
# MEMIT and AlphaEdit (memit + nullspace), with Eff/Gen/Spe, retention of the facts the model knows, seconds per
# edit and peak memory in each run's result.json; then the key statistics' cost against a bare forward, and a
# causal trace of the MLPs (a check of the edited layers).
#
# Settings: AlphaEdit's own configuration for Qwen2.5-7B (repo commit ed44d03, configs/qwen2.5-7b.json: layers
# 4-8, v_lr 0.1, 25 steps, clamp 0.75, kl 0.0625, wd 0.5, threshold 2e-2, L2 10) with λ 15000 (its Llama-3 value),
# C0 of layers 4-8 over 100,000 tokens of wiki-leads. Nothing here is calibrated on this model (the held-out
# calibration of SmolLM2 costs ~20 runs; see docs). Install the model first: `make models`.
#
# Rerunnable: every step whose output exists is skipped, an interrupted run continues with --resume. Run it in the
# background, alone (it takes hours on 2 cores):
#   OMP_NUM_THREADS=1 nohup benchmarks/qwen_cpu.sh /work/runs/qwen15b > /work/runs/qwen15b.log 2>&1 &
# Summary: .venv/bin/python benchmarks/seq_table.py /work/runs/qwen15b/memit /work/runs/qwen15b/memit+nullspace
set -uo pipefail
OUT=${1:-runs/qwen15b}
DATA=${DATA:-../shared/data/real}
EDITKIT=${EDITKIT:-.venv/bin/editkit}
PY=${PY:-.venv/bin/python}
MODEL=${MODEL:-qwen2.5-coder-1.5b}
LAYERS=${LAYERS:-4-8}
ONLY=${ONLY:-}
mkdir -p "$OUT"
say() { echo "[$(date '+%F %T')] $*"; }

[ -f "$OUT/known_probes.json" ] || { say "known-fact probes"; "$PY" benchmarks/known_probes.py --model "$MODEL" \
    --facts "$DATA/known_1000.json" --out "$OUT/known_probes.json" || exit 2; }

COMMON=(--model "$MODEL" --device cpu --layers "$LAYERS" --batch-size 100 --num-edits 100
        --requests "$DATA/counterfact_portability_gpt4.json"
        --corpus "$DATA/wikipedia_vital_leads_en.jsonl:text" --stats-max-tokens 100000
        --set v_lr=0.1 --set v_steps=25 --set clamp_norm=0.75 --set kl_factor=0.0625 --set v_weight_decay=0.5
        --set mom2_weight=15000 --retention-probes "$OUT/known_probes.json" --metrics counterfact,retention --quiet)

source "$(dirname "$0")/run_or_resume.sh"
# AlphaEdit first: its efficacy is the target, and a session may end before both runs do
say "memit+nullspace"; run_or_resume "$OUT/memit+nullspace" --editor memit --constraint nullspace
say "memit"; run_or_resume "$OUT/memit" --editor memit

if [ ! -f "$OUT/stats-bench.json" ] && { [ -z "$ONLY" ] || [[ " $ONLY " == *" stats-bench "* ]]; }; then
  say "key statistics against a bare forward"
  "$PY" benchmarks/stats_rate.py --model "$MODEL" --layers "$LAYERS" --tokens 20000 --repeats 1 \
      --corpus "$DATA/wikipedia_vital_leads_en.jsonl:text" --json "$OUT/stats-bench.json" > "$OUT/stats-bench.txt" 2>&1
fi
if [ ! -f "$OUT/trace-w5.json" ] && { [ -z "$ONLY" ] || [[ " $ONLY " == *" trace "* ]]; }; then
  say "causal trace"
  # each fact costs (layers × tokens × samples) forwards: 8 facts × 2 samples is ~2,000 forwards of the 1.5B model
  "$EDITKIT" trace --model "$MODEL" --requests "$DATA/known_1000.json" --num-facts "${TRACE_FACTS:-8}" \
      --samples "${TRACE_SAMPLES:-2}" --kinds mlp \
      --window 5 --seed 0 --out "$OUT/trace-w5.json" > "$OUT/trace-w5.txt" 2> "$OUT/trace-w5.log"
fi
say "done"
