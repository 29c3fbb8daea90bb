# battgen: two commands for a fresh machine.
#   make book   set up, execute the chapters (full profile), build the site into _build/html
#   make test   set up, run every test (unit, smoke chapters + nbval, -n -W book build, site + browser)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# On the project's machines the data lie in ../shared/pulsebat. Elsewhere (a fresh clone) the
# chapters download them from their pinned upstream URLs into battgen's cache (sha256-checked), and
# `make test` fetches them first and points the tests at that cache, whose layout is a data folder's.
export BATTGEN_DATA_DIR ?= $(wildcard $(abspath ../shared/pulsebat))
TEST_DATA = $${BATTGEN_DATA_DIR:-$$($(PY) -c 'from battgen.data import cache_dir; print(cache_dir())')}
export BATTGEN_PROGRESS ?= 0
# Chapter profile: full (the paper's settings, 3 seeds) for the book, smoke (few epochs, 1 seed) in
# tests. BATTGEN_PROFILE=smoke in the environment works too; the book build reads the same variable.
ENV_PROFILE := $(BATTGEN_PROFILE)
PROFILE ?= $(or $(ENV_PROFILE),full)
export BATTGEN_PROFILE = $(PROFILE)
JUPYTER_BOOK := $(VENV)/bin/jupyter-book
BUILD_FLAGS ?= -n -W --keep-going
# Test processes at once (pytest-xdist); chapters at once are one per core (BATTGEN_BOOK_JOBS).
TEST_JOBS ?= 2

.PHONY: setup data unit test reproduce bench clean notebooks build book nbval site-test linkcheck

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned, so pip never resolves a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,book]"
	# MathJax from the npm registry, served by the site itself (offline formulas)
	$(PY) -m battgen.book mathjax
	# the trainer's compiled kernels into numba's disk cache (once; else the first CVAE fit pays it)
	$(PY) -c "from battgen.train import warm_up; print(f'[make] trainer kernels compiled in {warm_up():.0f} s')"
	touch $@

# Without a data folder: download and verify every PulseBat file into the cache once.
data: setup
	@if [ -z "$(BATTGEN_DATA_DIR)" ]; then $(VENV)/bin/battgen fetch >/dev/null && echo "[make] PulseBat files in $(TEST_DATA)"; fi

unit: data
	BATTGEN_DATA_DIR="$(TEST_DATA)" $(PY) -m pytest -q -n $(TEST_JOBS) -m "not slow" tests

# Every test: unit (and slow) tests, the smoke chapters, nbval over them, the -n -W build, the
# site checks (HTML and headless Chromium: .ci/run installs Debian's chromium).
test: data
	BATTGEN_DATA_DIR="$(TEST_DATA)" $(PY) -m pytest -q -n $(TEST_JOBS) tests
	$(MAKE) notebooks PROFILE=smoke
	$(MAKE) nbval
	$(MAKE) build PROFILE=smoke
	$(MAKE) site-test

# Execute the chapters of _toc.yml (jupytext sources in notebooks/) with papermill into
# book/notebooks/, side by side; only those whose source, the package, the data or the parameters changed.
notebooks: setup
	$(PY) -m battgen.book run --profile $(PROFILE)

# Build _build/html; the battgen extension first executes any missing or stale chapter (profile
# $(PROFILE)), so `jupyter-book build book/` alone does the same. On failure print the reports.
build: setup
	$(JUPYTER_BOOK) build book/ $(BUILD_FLAGS) || { $(PY) -m battgen.book reports; exit 1; }

book: setup
	$(MAKE) notebooks PROFILE=$(PROFILE)
	$(MAKE) build PROFILE=$(PROFILE)

# Re-run the executed notebooks and compare the cells tagged nbval-check-output (rounded, seeded numbers).
nbval: setup
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_JOBS) --dist loadfile --nbval-lax --nbval-current-env book/notebooks/

# Checks of the built site: pages, figures, no absolute path, clean cells, offline MathJax in headless Chromium.
site-test: data
	BATTGEN_DATA_DIR="$(TEST_DATA)" $(PY) -m pytest -q --book -m book tests

# Every external link of the site (needs the network; not part of `make test` or CI).
linkcheck: setup
	BATTGEN_BOOK_EXECUTE=0 $(JUPYTER_BOOK) build book/ --builder linkcheck

reproduce: setup
	$(VENV)/bin/battgen reproduce --battery all --pulse-width 5 --seeds 0 1 2 --out results/ --force

# One table: each speed figure of issue 13 against a reference measured in the same run, with the load average.
# BENCH_FLAGS="--book --tests" adds make book and make test, each in a temporary clean clone (~15 min more).
BENCH_FLAGS ?=
bench: setup
	$(PY) benchmarks/bench_speed.py $(BENCH_FLAGS)

clean:
	rm -rf _build book/_build book/notebooks results .stamps
