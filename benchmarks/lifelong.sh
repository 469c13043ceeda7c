#!/usr/bin/env bash
# Lifelong editing on SmolLM2-135M: a long CounterFact stream (counterfact-edit.json, then counterfact-train.json;
# ~20,000 records, de-duplicated by case id, without the calibration's held-out cases and without any case of the
# held-out counterfact-val.json), batches of 100, evaluated every EVAL_EVERY batches on all edits so far:
# Eff/Gen/Spe (counterfact), retention of the facts the model knows before editing (known_1000.json probes), four
# general-capability tasks (SST-2, sentiment, NLI, RTE; 100 items each), perplexity (300 ME-PPL texts), and per
# edited layer ‖W_n‖/‖W_0‖ (the kernel's `weight.growth` note, in result.json and the journal).
#
# Configurations (run names): memit, memit+nullspace, memit+nas, memit+nullspace+nas, encore, encore+nullspace,
# betaedit, lyaplock. Rerunnable: a finished run is skipped, an interrupted one continues with `editkit run
# --resume`; start it in the background, one instance per core with disjoint ONLY sets:
#   ONLY="memit+nullspace" EDITS=2000 nohup benchmarks/lifelong.sh /work/runs/lifelong > /work/runs/a.log 2>&1 &
#   ONLY="memit encore" nohup benchmarks/lifelong.sh /work/runs/lifelong > /work/runs/b.log 2>&1 &
# Summary: .venv/bin/python benchmarks/seq_table.py /work/runs/lifelong/* --curve
#
# Settings: SmolLM2's calibrated MEMIT settings (layers 4-8, v* lr 0.5 × 25 steps, stop at loss 0.3, λ = LAMBDA,
# default 1000),# AlphaEdit's null space (τ 2e-2, L2 10); each stabiliser with its published defaults (its preset), n̄ of NAS
# over NAS_SAMPLES rewrites of counterfact-edit.json (default 100; the authors sample 1,000) optimised on the
# unedited model (stored beside C0 and reused).
# Environment: EDITS (default 1000), BATCH (100), EVAL_EVERY (5), ONLY, DEVICE (cpu), EXTRA, DATA, EDITKIT, PY.
set -uo pipefail
OUT=${1:-runs/lifelong}
DATA=${DATA:-../shared/data/real}
EDITKIT=${EDITKIT:-.venv/bin/editkit}
PY=${PY:-.venv/bin/python}
EDITS=${EDITS:-1000}
BATCH=${BATCH:-100}
EVAL_EVERY=${EVAL_EVERY:-5}
DEVICE=${DEVICE:-cpu}
MODEL=${MODEL:-smollm2-135m}
ONLY=${ONLY:-}
NAS_SAMPLES=${NAS_SAMPLES:-100}
mkdir -p "$OUT"

STREAM="$OUT/stream-$EDITS.json"
[ -f "$STREAM" ] || "$PY" benchmarks/lifelong_stream.py --data "$DATA" --edits "$EDITS" --out "$STREAM" || exit 2
[ -f "$OUT/known_probes.json" ] || "$PY" benchmarks/known_probes.py --model "$MODEL" \
    --facts "$DATA/known_1000.json" --out "$OUT/known_probes.json" || exit 2

COMMON=(--model "$MODEL" --device "$DEVICE" --layers 4-8 --batch-size "$BATCH" --eval-every "$EVAL_EVERY"
        --requests "$STREAM" --num-edits "$EDITS"
        --corpus "$DATA/wikipedia_vital_leads_en.jsonl:text" --stats-max-tokens 100000
        --set v_lr=0.5 --set v_steps=25 --set early_stop_loss=0.3 --set "mom2_weight=${LAMBDA:-1000}"
        --retention-probes "$OUT/known_probes.json" --metrics counterfact,retention,general,perplexity
        --metric-option "general.data=$DATA/general" --metric-option general.tasks=sst2,sentiment_analysis,nli,rte
        --metric-option general.limit=100 --metric-option "perplexity.data=$DATA/ME-PPL.json"
        --metric-option perplexity.limit=300 --quiet)
NAS=(--set "nas.anchor_data=$DATA/counterfact-edit.json" --set "nas.anchor_samples=$NAS_SAMPLES")

source "$(dirname "$0")/run_or_resume.sh"
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
run() { run_or_resume "$@" "${EXTRA_ARGS[@]}"; }

run "$OUT/memit+nullspace" --editor memit --constraint nullspace
run "$OUT/memit" --editor memit
run "$OUT/memit+nullspace+nas" --editor memit --constraint nullspace --constraint nas "${NAS[@]}"
run "$OUT/memit+nas" --editor memit --constraint nas "${NAS[@]}"
run "$OUT/encore" --editor encore
run "$OUT/encore+nullspace" --editor encore --constraint nullspace
run "$OUT/betaedit" --editor betaedit
run "$OUT/lyaplock" --editor lyaplock
echo "=== done $(date '+%F %T')"
