#!/usr/bin/env bash
# Second `device` call (see bundle.sh): the model's second half; the CUDA tests; then the runs in ONLY
# (default: memit and memit + nullspace, side by side on the one GPU) of benchmarks/sequential_gpu.sh for at most
# BUDGET seconds. The summary table is refreshed in $OUT every 30 s, so a call cut short still returns it.
set -uo pipefail
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
[ -d /tmp/site/editkit ] || { echo "the first call's install is not there: run call1.sh first"; exit 3; }
cat /tmp/gguf.part1 .gpu/p2/gguf.part2 > /tmp/smollm2.gguf
echo "$(cat /tmp/gguf.sha256)  /tmp/smollm2.gguf" | sha256sum -c - || exit 4
t0=$SECONDS
python3 -m pytest -q -p no:cacheprovider tests/integration/test_cuda.py > "$OUT/cuda-tests.txt" 2>&1
echo "CUDA tests: exit $?"; tail -3 "$OUT/cuda-tests.txt"
export EDITKIT=/tmp/site/bin/editkit PY=python3 DATA=/tmp/data MODEL=/tmp/smollm2.gguf
python3 -c "from editkit.modelsource.resolve import resolve_model; resolve_model('/tmp/smollm2.gguf')" || exit 5  # convert once
B=${BUDGET:-420}
read -r -a RUNS <<< "${ONLY:-memit memit+nullspace}"
for name in "${RUNS[@]}"; do  # staggered: the first computes the key statistics the others reuse
  (ONLY=$name timeout "$B" benchmarks/sequential_gpu.sh /tmp/seq > "$OUT/${name//+/_}.out" 2>&1) &
  sleep 45; B=$((B > 105 ? B - 45 : 60))  # never 0 (no limit for timeout) nor negative
done
dirs=("${RUNS[@]/#//tmp/seq/cf/}")
while [ -n "$(jobs -r)" ]; do
  python3 benchmarks/seq_table.py "${dirs[@]}" --curve > "$OUT/table.md" 2>&1
  sleep 30; echo "t=$((SECONDS - t0)) s"
done
python3 benchmarks/seq_table.py "${dirs[@]}" --curve > "$OUT/table.md" 2>&1
cat "$OUT/table.md"
