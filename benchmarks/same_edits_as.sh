#!/usr/bin/env bash
# Same edits as another commit: tiny GPT-2 and Llama models, 8 requests in 2 batches, MEMIT + null space, PRUNE, RECT
# and RECT + null space, run with the code at COMMIT (imported first, from a worktree) and at the working tree;
# prints whether every deltas.safetensors is bit-identical and the counterfact figures equal. Usage:
#   benchmarks/same_edits_as.sh 80ef7e4
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=${1:?usage: benchmarks/same_edits_as.sh COMMIT}
T=$(mktemp -d)
git worktree add -f $T/old $OLD >/dev/null 2>&1
.venv/bin/python - "$T" <<'PY'
import sys; sys.path.insert(0, "tests/integration")
from pathlib import Path
from cli_harness import tiny_setup
for fam in ("gpt2", "llama"):
    tiny_setup(Path(sys.argv[1]) / "w" / fam, fam, requests=8)
PY
for fam in gpt2 llama; do for ed in "--constraint nullspace --set nullspace.threshold=1e-3" "--editor prune" "--editor rect" "--editor memit --constraint rect --constraint nullspace --set nullspace.threshold=1e-3"; do
  W=$T/w/$fam
  rm -rf $W/old $W/new; ARGS=(run --model $W/model --requests $W/requests.json $ed --corpus $W/corpus.txt --batch-size 4
        --set v_steps=25 --metrics counterfact --quiet --no-stats-store)
  PYTHONPATH=$T/old:$T/old/plugins OMP_NUM_THREADS=1 .venv/bin/python -m editkit "${ARGS[@]}" --out $W/old
  OMP_NUM_THREADS=1 .venv/bin/python -m editkit "${ARGS[@]}" --out $W/new
  .venv/bin/python - "$W" "$ed" <<'PY'
import sys, json
from pathlib import Path
from safetensors.torch import load_file
import torch
w = Path(sys.argv[1])
a, b = load_file(str(w / "old/deltas.safetensors")), load_file(str(w / "new/deltas.safetensors"))
same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
ra, rb = json.loads((w / "old/result.json").read_text()), json.loads((w / "new/result.json").read_text())
print(w.name, sys.argv[2], "deltas bit-identical:", same, "| max |delta|", max(float(v.abs().max()) for v in b.values()), "| efficacy", ra["summary"]["efficacy_post"], rb["summary"]["efficacy_post"],
      "| counterfact post equal:", {k: ra["metrics"]["post"][k] for k in ra["metrics"]["post"]} == {k: rb["metrics"]["post"][k] for k in ra["metrics"]["post"]})
PY
done; done
git worktree remove --force $T/old; rm -rf "$T"
