#!/usr/bin/env bash
# First `device` call (see bundle.sh): install the wheels, unpack the data, keep the model's first half in /tmp;
# print what the machine has.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
mkdir -p /tmp/data /tmp/seq && tar -xJf .gpu/data.tar.xz -C /tmp/data && cp .gpu/p1/gguf.part1 .gpu/gguf.sha256 /tmp/ \
  && cp .gpu/known_probes.json /tmp/seq/ || exit 4
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
nvidia-smi -L
python3 -c "import torch, transformers, editkit; print(torch.__version__, torch.cuda.is_available(), transformers.__version__)"
