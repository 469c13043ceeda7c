#!/usr/bin/env bash
# The memory formula against a real run of Qwen2.5-Coder-1.5B (docs/memory.md): the first batch of 100 CounterFact
# edits of benchmarks/qwen_cpu.sh (MEMIT, layers 4-8, its settings) with 2 v* steps (v*'s memory does not depend
# on the step count; the time does) and no evaluation, once with glibc's default allocator alone
# (EDITKIT_MALLOC_TRIM=0), once with a fixed 128 KiB mmap threshold (MALLOC_MMAP_THRESHOLD_=131072: every block
# of 128 KiB or more is mapped afresh and unmapped when freed) and once as editkit runs by default (glibc's
# allocator, its free pages handed back after each stage and v* group: editkit.allocator); then the batch's
# largest v* group alone (the group that sets the formula's v* term), the first two ways; each run's stage peaks
# beside the formula (benchmarks/memory_of_run.py, figures in OUT/<run>-memory.json). Rerunnable: finished runs
# are skipped. About 15 GB of memory per run; run in the background:
#   OMP_NUM_THREADS=1 nohup benchmarks/qwen_memory.sh runs/qwen-memory > runs/qwen-memory.log 2>&1 &
# Environment: DATA, MODEL (qwen2.5-coder-1.5b), LAYERS (4-8), EDITKIT, PY.
set -uo pipefail
OUT=${1:-runs/qwen-memory}
DATA=${DATA:-../shared/data/real}
EDITKIT=${EDITKIT:-.venv/bin/editkit}
PY=${PY:-.venv/bin/python}
MODEL=${MODEL:-qwen2.5-coder-1.5b}
LAYERS=${LAYERS:-4-8}
mkdir -p "$OUT"
say() { echo "[$(date '+%F %T')] $*"; }

COMMON=(--model "$MODEL" --device cpu --layers "$LAYERS" --batch-size 100 --editor memit
        --corpus "$DATA/wikipedia_vital_leads_en.jsonl:text" --stats-max-tokens 100000
        --set v_lr=0.1 --set v_steps=2 --set clamp_norm=0.75 --set kl_factor=0.0625 --set v_weight_decay=0.5
        --set mom2_weight=15000 --metrics none --quiet)

# one run, then its figures: NAME ALLOCATOR(default|mmap128k|trim) REQUESTS NUM [memory_of_run options]
measure() {
  local name=$1 allocator=$2 requests=$3 num=$4; shift 4
  local allocation=(EDITKIT_MALLOC_TRIM=0)  # default: glibc's allocator alone
  [ "$allocator" = mmap128k ] && allocation=(EDITKIT_MALLOC_TRIM=0 MALLOC_MMAP_THRESHOLD_=131072)
  [ "$allocator" = trim ] && allocation=(EDITKIT_MALLOC_TRIM=1)
  if [ ! -f "$OUT/$name/result.json" ]; then
    [ -d "$OUT/$name" ] && { say "$name: an unfinished run is there; remove $OUT/$name to measure again"; return 1; }
    say "$name"
    env "${allocation[@]}" "$EDITKIT" run "${COMMON[@]}" --requests "$requests" --num-edits "$num" \
        --out "$OUT/$name" || return 1
  fi
  "$PY" benchmarks/memory_of_run.py "$OUT/$name" --json "$OUT/$name-memory.json" "$@"
}

# the batch runs write the largest v* group (the same records both times); the group runs only read it
GROUP=(--largest-group "$OUT/largest-group.json")
measure batch-mmap128k mmap128k "$DATA/counterfact_portability_gpt4.json" 100 "${GROUP[@]}" || exit 1
measure batch-default default "$DATA/counterfact_portability_gpt4.json" 100 "${GROUP[@]}" || exit 1
groups=$("$PY" -c "import json, sys; print(len(json.load(open(sys.argv[1]))))" "$OUT/largest-group.json")
measure group-mmap128k mmap128k "$OUT/largest-group.json" "$groups" || exit 1
measure group-default default "$OUT/largest-group.json" "$groups" || exit 1
measure batch-trim trim "$DATA/counterfact_portability_gpt4.json" 100 "${GROUP[@]}" || exit 1
say "done"
