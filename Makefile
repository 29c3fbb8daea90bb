# battgen: two commands for a fresh machine.
#   make book   set up, execute the notebooks (full profile), build the site into _build/html
#   make test   set up, run every test (unit, smoke notebooks + nbval, -W book build)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# On the project's machines the data lie in ../shared/pulsebat; elsewhere pooch downloads them.
export BATTGEN_DATA_DIR ?= $(wildcard $(abspath ../shared/pulsebat))
export BATTGEN_PROGRESS ?= 0
# Notebook profile: full (the paper's settings, 3 seeds) for the book, smoke (few epochs, 1 seed) in tests.
PROFILE ?= full
JUPYTER_BOOK := $(VENV)/bin/jupyter-book
BUILD_FLAGS ?= -n -W --keep-going

.PHONY: setup unit test reproduce bench clean notebooks build book nbval site-test

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned, so pip never resolves a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,book]"
	touch $@

unit: setup
	$(PY) -m pytest -q -m "not slow" tests

# Every test: unit (and slow) tests, the smoke notebooks, nbval over them, the -n -W build, site checks.
test: setup
	$(PY) -m pytest -q tests
	$(MAKE) notebooks PROFILE=smoke
	$(MAKE) nbval
	$(MAKE) build
	$(MAKE) site-test

# Execute the chapters of _toc.yml (jupytext sources in notebooks/) with papermill into
# book/notebooks/; only those whose source, the battgen package, the data or the parameters changed.
notebooks: setup
	$(PY) -m battgen.book run --profile $(PROFILE)

# Render the executed notebooks into _build/html (no execution); on failure print the execution reports.
build: setup
	$(JUPYTER_BOOK) build book/ $(BUILD_FLAGS) || { $(PY) -m battgen.book reports; exit 1; }

book: setup
	$(MAKE) notebooks PROFILE=$(PROFILE)
	$(MAKE) build

# Re-run the executed notebooks and compare the cells tagged nbval-check-output (rounded, seeded numbers).
nbval: setup
	$(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env book/notebooks/

# Checks of the built site: intro, every chapter page, non-empty figures (fail if the site is missing).
site-test: setup
	$(PY) -m pytest -q --book -m book tests

reproduce: setup
	$(VENV)/bin/battgen reproduce --battery all --pulse-width 5 --seeds 0 1 2 --out results/

bench: setup
	$(PY) benchmarks/bench_reproduce.py

clean:
	rm -rf _build book/_build book/notebooks results .stamps
