#!/usr/bin/env bash
# The sequential protocol of benchmarks/sequential_smollm2.sh with 2,000 edits, for a machine with a CUDA GPU
# (the `device` tool, when a task is lent one). CounterFact in EasyEdit's form
# (counterfact-edit.json: one paraphrase and one neighbourhood prompt per case, no generation prompts, so no
# fluency; the portability file has only 1,031 cases), converted to CounterFact's record form, without the
# calibration's held-out cases (the case ids of counterfact_portability_gpt4.json's records 931-1030), first
# memit and memit + nullspace (the paper's headline pair), then the others while time
# is left. Results: OUT/cf/*/result.json; summary: benchmarks/seq_table.py OUT/cf/* --curve.
# Usage (from the repository root, after `make setup`):
#   benchmarks/sequential_gpu.sh [OUT]          (EDITS, BATCH, EVAL_EVERY, ONLY as in sequential_smollm2.sh)
set -euo pipefail
OUT=${1:-runs/seq-gpu}
DATA=${DATA:-../shared/data/real}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
"$PY" - "$DATA" "$OUT/counterfact-2000.json" "${EDITS:-2000}" <<'EOF'
import json, sys
from editkit.helpers.atomic import write_json_atomic
from editkit.requests import requests_from_records
from editkit_datasets.formats import from_easyedit
data, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
held_out = {r["case_id"] for r in json.load(open(f"{data}/counterfact_portability_gpt4.json"))[931:]}
edit = json.load(open(f"{data}/counterfact-edit.json"))
records = [from_easyedit(r, i) for i, r in enumerate(edit) if r["case_id"] not in held_out][:n]
requests_from_records(records, source=out)  # every record parses as `editkit run --requests` will read it
write_json_atomic(out, records)
print(f"{len(records)} CounterFact records (held-out calibration cases left out) -> {out}")
EOF
export DEVICE=${DEVICE:-cuda} EDITS=${EDITS:-2000} BATCH=${BATCH:-100} EVAL_EVERY=${EVAL_EVERY:-5}
export REQUESTS="$OUT/counterfact-2000.json" ONLY=${ONLY:-"memit memit+nullspace prune prune+nullspace rect rect+nullspace"}
exec benchmarks/sequential_smollm2.sh "$OUT"
