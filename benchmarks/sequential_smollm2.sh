#!/usr/bin/env bash
# The sequential table on SmolLM2-135M: CounterFact edits in sequential batches for memit,
# prune and rect, each without and with --constraint nullspace, then ZsRE for memit and memit + nullspace.
# Every run evaluates before, every EVAL_EVERY batches and after: Eff/Gen/Spe (counterfact), fluency and
# consistency (first 50 edited records' generation prompts), retention of the facts the model knows before
# editing (benchmarks/known_probes.py on known_1000.json), four general-capability tasks that this model does
# not answer at chance (SST-2, sentiment, NLI, RTE; 100 items each) and perplexity on 300 ME-PPL texts.
#
# Rerunnable: a finished run is skipped, an interrupted one continues with `editkit run --resume` from its last
# complete batch, so start it in the background and start it again after any interruption:
#   nohup benchmarks/sequential_smollm2.sh runs/seq-smollm2 > runs/seq-smollm2.log 2>&1 &
# Then: .venv/bin/python benchmarks/seq_table.py runs/seq-smollm2/cf/* runs/seq-smollm2/zsre/*
#
# Settings (calibrated on held-out cases by benchmarks/calibrate_smollm2.sh; see the README): layers 4-8 (the
# causal trace), v* lr 0.5 x 25 steps, MEMIT's λ (LAMBDA, default 1000; also PRUNE's and RECT's, which are
# MEMIT's solve plus their constraint), null space τ = 2e-2 with L2 10 (AlphaEdit's published values;
# NULLSPACE holds extra --set arguments for it). Environment: EDITS (default 500), BATCH (100), EVAL_EVERY (2),
# ONLY (space-separated run names, e.g. "memit memit+nullspace"; a name matches the CounterFact and the ZsRE
# run alike), REQUESTS (CounterFact records; default the portability file), DEVICE (cpu; cuda on a GPU: see
# benchmarks/sequential_gpu.sh), EXTRA (more `editkit run` arguments, last so they win, e.g. "--metrics
# counterfact" for a smoke test), DATA, EDITKIT, PY. Two instances with disjoint ONLY sets use both cores.
set -uo pipefail
OUT=${1:-runs/seq-smollm2}
DATA=${DATA:-../shared/data/real}
EDITKIT=${EDITKIT:-.venv/bin/editkit}
PY=${PY:-.venv/bin/python}
EDITS=${EDITS:-500}
BATCH=${BATCH:-100}
EVAL_EVERY=${EVAL_EVERY:-2}
DEVICE=${DEVICE:-cpu}
MODEL=${MODEL:-smollm2-135m}
ONLY=${ONLY:-}
REQUESTS=${REQUESTS:-$DATA/counterfact_portability_gpt4.json}
if [ "$EDITS" -gt 900 ] && [ "$REQUESTS" = "$DATA/counterfact_portability_gpt4.json" ]; then
  echo "EDITS=$EDITS: at most 900 (the last 131 CounterFact records are the calibration's held-out cases)" >&2
  exit 2
fi
mkdir -p "$OUT/cf" "$OUT/zsre"

[ -f "$OUT/known_probes.json" ] || "$PY" benchmarks/known_probes.py --model "$MODEL" \
    --facts "$DATA/known_1000.json" --out "$OUT/known_probes.json" || exit 2

COMMON=(--model "$MODEL" --device "$DEVICE" --layers 4-8 --batch-size "$BATCH" --eval-every "$EVAL_EVERY"
        --num-edits "$EDITS" --corpus "$DATA/wikipedia_vital_leads_en.jsonl:text" --stats-max-tokens 100000
        --set v_lr=0.5 --set v_steps=25 --set early_stop_loss=0.3 --set "mom2_weight=${LAMBDA:-1000}" --retention-probes "$OUT/known_probes.json" --generation-records 50
        --metric-option "general.data=$DATA/general" --metric-option general.tasks=sst2,sentiment_analysis,nli,rte
        --metric-option general.limit=100 --metric-option "perplexity.data=$DATA/ME-PPL.json"
        --metric-option perplexity.limit=300 --quiet)
CF=(--requests "$REQUESTS" --metrics counterfact,fluency,retention,general,perplexity)
read -r -a NS <<< "${NULLSPACE:-}"
ZSRE=(--dataset "$DATA/zsre_mend_eval_portability_gpt4.json"
      --metrics zsre,retention,general,perplexity)

source "$(dirname "$0")/run_or_resume.sh"
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"  # appended to every new run's arguments (e.g. a quick smoke test)
run() { run_or_resume "$@" "${EXTRA_ARGS[@]}"; }

run "$OUT/cf/memit" "${CF[@]}" --editor memit
run "$OUT/cf/memit+nullspace" "${CF[@]}" --editor memit --constraint nullspace "${NS[@]}"
run "$OUT/cf/prune" "${CF[@]}" --editor prune
run "$OUT/cf/prune+nullspace" "${CF[@]}" --editor prune --constraint nullspace "${NS[@]}"
run "$OUT/cf/rect" "${CF[@]}" --editor rect
# RECT + P as the AlphaEdit paper plugs it in: RECT's mask, then the projection (keeps ΔP = Δ)
run "$OUT/cf/rect+nullspace" "${CF[@]}" --editor rect --constraint rect --constraint nullspace \
    --set nullspace.mode=project "${NS[@]}"
run "$OUT/zsre/memit" "${ZSRE[@]}" --editor memit
run "$OUT/zsre/memit+nullspace" "${ZSRE[@]}" --editor memit --constraint nullspace "${NS[@]}"
# MEMIT at its published λ (15000) for comparison with the paper's protocol (the table's memit row has LAMBDA)
run "$OUT/cf/memit-lambda15000" "${CF[@]}" --editor memit --set mom2_weight=15000
echo "=== done $(date '+%F %T')"
