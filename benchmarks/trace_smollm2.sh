#!/usr/bin/env bash
# Causal trace of SmolLM2-135M on ROME's known facts: which layers' MLPs carry the facts.
# Two traces, one after the other: single-layer MLP and hidden-state restoration (ROME's Fig. 1 rows for
# the MLP with window 1), then the MLP with a window of 5 layers (ROME's figures use 10 of GPT-2 XL's 48).
# Results and the layer choice they support: README, "Causal tracing and general capability on SmolLM2".
# Usage: benchmarks/trace_smollm2.sh [OUT_DIR] [KNOWN_FACTS_JSON]   (about 1 h 20 min on one shared CPU core)
set -euo pipefail
OUT=${1:-runs/trace-smollm2}
KNOWN=${2:-../shared/data/real/known_1000.json}
EDITKIT=${EDITKIT:-.venv/bin/editkit}
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
/usr/bin/time -v "$EDITKIT" trace --model smollm2-135m --requests "$KNOWN" --num-facts 100 --samples 10 \
    --kinds mlp,hidden --window 1 --seed 0 --out "$OUT/trace-w1.json" > "$OUT/trace-w1.txt" 2> "$OUT/trace-w1.log"
/usr/bin/time -v "$EDITKIT" trace --model smollm2-135m --requests "$KNOWN" --num-facts 100 --samples 10 \
    --kinds mlp --window 5 --seed 0 --out "$OUT/trace-w5.json" > "$OUT/trace-w5.txt" 2> "$OUT/trace-w5.log"
