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

.PHONY: setup unit test reproduce bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned, so pip never resolves a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,book]"
	touch $@

unit: setup
	$(PY) -m pytest -q -m "not slow" tests

test: setup
	$(PY) -m pytest -q tests

reproduce: setup
	$(VENV)/bin/battgen reproduce --battery all --pulse-width 5 --seeds 0 1 2 --out results/

bench: setup
	$(PY) benchmarks/bench_reproduce.py

clean:
	rm -rf _build book/_build book/notebooks results .stamps
