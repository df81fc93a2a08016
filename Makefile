# Two commands on a fresh machine:
#   make run    install into .venv, then run the whole pipeline on the embedded default data
#   make test   install into .venv, then run the test suite (make test-fast: the quick tests only)
VENV ?= .venv
PYTHON ?= python3
# The torch wheel comes from TORCH_INDEX, which replaces the package index for that one wheel:
# by default PyTorch's CPU wheel index, so a laptop never downloads the multi-GB CUDA build.
# Pip's configured find-links and extra indexes still apply; an unreachable TORCH_INDEX only
# warns, and the install fails if nothing else offers TORCH_SPEC (it never falls back to PyPI's
# CUDA build). GPU machine: a CUDA index, e.g. `make setup TORCH_INDEX=https://download.pytorch.org/whl/cu128`
# (docs/cluster.md); `TORCH_INDEX=` uses the configured index alone (a mirror; on PyPI, Linux
# wheels are CUDA builds). torch's dependencies come from the configured index.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
CORES ?= 2
ACTIVATE = . $(VENV)/bin/activate
PIP = $(VENV)/bin/python -m pip
# One marker per (TORCH_SPEC, TORCH_INDEX): changing either reinstalls torch.
TORCH_MARKER = $(VENV)/.torch-$(shell printf '%s\n' '$(TORCH_SPEC) $(TORCH_INDEX)' | cksum | cut -d' ' -f1)

.PHONY: setup run paper test test-fast lint format schema clean

setup: $(VENV)/.installed

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(TORCH_MARKER): | $(VENV)/bin/python
	rm -f $(VENV)/.torch-*
	$(PIP) uninstall --quiet --yes torch
	$(PIP) install --quiet --no-deps $(TORCH_SPEC) $(if $(strip $(TORCH_INDEX)),--index-url $(TORCH_INDEX))
	$(PIP) install --quiet $(TORCH_SPEC)  # torch's own dependencies, from the configured index
	$(VENV)/bin/python -c "import torch; print('installed torch', torch.__version__, 'CUDA', torch.version.cuda or 'none (CPU build)')"
	touch $@

$(VENV)/.installed: pyproject.toml $(TORCH_MARKER)
	$(PIP) install --quiet -e '.[test,sim]'
	touch $@

run: setup
	$(ACTIVATE) && snakemake --profile profiles/default --cores $(CORES) all

paper: setup
	$(ACTIVATE) && snakemake --profile profiles/default --cores $(CORES) paper
	$(ACTIVATE) && snakemake paper --report results/report.html

# The tests run in TEST_WORKERS processes (pytest-xdist; 0 runs them in one), a test module's tests
# in one of them, so a module's pipeline run (its `built` fixture) is built once; the 15 slowest
# tests are listed. On a machine that other work keeps busy, TEST_WORKERS=0 can be the faster.
TEST_WORKERS ?= $(CORES)
PYTEST = python -m pytest -ra -n $(TEST_WORKERS) --dist loadfile --durations=15

test: setup
	$(ACTIVATE) && $(PYTEST)

# The quick tests: no pipeline runs (marked slow), no SLURM.
test-fast: setup
	$(ACTIVATE) && $(PYTEST) -m "not slow and not slurm"

lint: setup
	$(ACTIVATE) && ruff check . && ruff format --check . && snakemake --lint && snakefmt --check Snakefile rules/

format: setup
	$(ACTIVATE) && ruff check --fix . && ruff format . && snakefmt Snakefile rules/

# The config schema and docs/settings.md's tables, generated from src/vlarisk/core/settings.py.
schema: setup
	$(ACTIVATE) && PYTHONPATH=src python -m vlarisk.workflow.config_schema && PYTHONPATH=src python -m vlarisk.workflow.config_schema --docs

clean:
	rm -rf results .snakemake
