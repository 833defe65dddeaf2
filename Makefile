# `make demo`: set up .venv and reproduce the 2017 notebook; `make test`: linters and tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The XLA compilation cache is on by default in ~/.cache/deeplinear/jax (DEEPLINEAR_JAX_CACHE
# overrides it, =off turns it off), so the second `make demo` starts warm.

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/deeplinear reproduce

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports --no-cache

test: lint
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_reproduce.py

clean:
	rm -rf $(VENV) .cache runs
