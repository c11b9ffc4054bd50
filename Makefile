# The README's commands. Everything installs into .venv on first use.
#   make demo     the main job: tiny LLaMA models (RMSNorm vs IBNorm-S/L/T) on the built-in corpus, offline
#   make study    the tiny CPU study: every norm tuned over 3 learning rates, 3 seeds, test-split numbers
#   make ladder   the tiny CPU scaling ladder: a law per norm, tested on the largest size, and its predictions
#   make test     the test suite (CPU)
#   make lint     ruff and the import-layer contracts (lint-imports)
# GPU users pick their torch build, e.g.
#   make install TORCH="torch==2.11.0 --index-url https://download.pytorch.org/whl/cu128"

PYTHON ?= python3
VENV   ?= .venv
# Pinned to the version the tests run against: an unpinned torch can pull a newer, multi-GB CUDA build.
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: install demo study study-readings study-optimizers ladder test test-fast lint bench gpu-check clean-runs

# torch is (re)installed only when none is there or TORCH is given on the command line, so a
# later `make test` after a pyproject change keeps a GPU build chosen with `make install TORCH=...`.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	if [ "$(origin TORCH)" = "command line" ] || ! $(PY) -c "import torch" 2>/dev/null; then \
		$(PIP) install -q $(TORCH); fi
	$(PIP) install -q -c constraints.txt -e ".[dev,triton]"
	touch $(STAMP)

install:
	rm -f $(STAMP)
	$(MAKE) $(STAMP)

# STUDY_JOBS trainings run at once, each on cores/STUDY_JOBS threads (tiny models use two threads poorly).
STUDY_JOBS ?= 2

# The demo is the one-seed study studies/demo.yaml: runs/demo/report.md.
demo: $(STAMP)
	$(PY) -m ibnorm_llm demo --jobs $(STUDY_JOBS)

# The tiny CPU study (studies/tiny_norms.yaml: RMSNorm vs IBNorm-S/L/T, 3 learning rates, 3 seeds):
# runs/study/report.md; rerunning continues where it stopped (docs/studies.md).
study: $(STAMP)
	$(PY) -m ibnorm_llm study --study tiny_norms --out runs/study --jobs $(STUDY_JOBS)

# Which IBNorm? The four readings of the compression against the paper's claims (about an hour on 2 cores).
study-readings: $(STAMP)
	$(PY) -m ibnorm_llm study --study ibnorm_readings --out runs/ibnorm_readings --jobs $(STUDY_JOBS)

# Norm x optimizer: RMSNorm, IBNorm-L, Derf under AdamW and Muon, the interaction in the report.
study-optimizers: $(STAMP)
	$(PY) -m ibnorm_llm study --study tiny_norm_x_optimizer --out runs/norm_x_optimizer --jobs $(STUDY_JOBS)

# The tiny CPU ladder (ladders/tiny_norms.yaml: RMSNorm vs IBNorm-L/T at 4 sizes and 3 budgets, 3 seeds):
# runs/ladder/report.md with each norm's fitted law, its held-out check, predictions and crossovers
# (docs/ladders.md); rerunning continues where it stopped.
ladder: $(STAMP)
	$(PY) -m ibnorm_llm ladder --ladder tiny_norms --out runs/ladder --jobs $(STUDY_JOBS)

test: $(STAMP)
	$(VENV)/bin/pytest -q

test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m "not slow"

# ruff, then the import contracts in pyproject.toml ([tool.importlinter]: layers, no cycles).
lint: $(STAMP)
	$(VENV)/bin/ruff check ibnorm_llm scripts eval tests
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) scripts/bench_norms.py
	$(PY) scripts/bench_data.py
	$(PY) scripts/bench_train.py --norms rmsnorm ibnorm_s ibnorm_l ibnorm_t

# On a GPU machine: the gpu-marked tests, bench_norms in bf16/fp32, bench_train at llama-60m, FSDP
# (scripts/gpu_check.sh; writes runs/gpu_check/).
gpu-check: $(STAMP)
	PYTHON=$(PY) bash scripts/gpu_check.sh

clean-runs:
	rm -rf runs/demo
