# Two commands on a fresh machine:
#   make run    install into .venv, then run the whole pipeline on the embedded default data
#   make test   install into .venv, then run the test suite (make test-fast: the quick tests only)
VENV ?= .venv
PYTHON ?= python3
# The CPU build of torch is taken first so that nothing pulls a multi-GB CUDA build by accident;
# on a GPU machine use e.g. `make run TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>"`.
TORCH_SPEC ?= torch==2.13.0
CORES ?= 2
ACTIVATE = . $(VENV)/bin/activate

.PHONY: setup run paper test test-fast lint format clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet $(TORCH_SPEC)
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $@

run: setup
	$(ACTIVATE) && snakemake --profile profiles/default --cores $(CORES) all

paper: setup
	$(ACTIVATE) && snakemake --profile profiles/default --cores $(CORES) paper
	$(ACTIVATE) && snakemake paper --report results/report.html

test: setup
	$(ACTIVATE) && python -m pytest -ra

# The quick tests: no pipeline runs (marked slow), no SLURM.
test-fast: setup
	$(ACTIVATE) && python -m pytest -ra -m "not slow and not slurm"

lint: setup
	$(ACTIVATE) && ruff check . && ruff format --check . && snakemake --lint && snakefmt --check Snakefile rules/

format: setup
	$(ACTIVATE) && ruff check --fix . && ruff format . && snakefmt Snakefile rules/

clean:
	rm -rf results .snakemake
