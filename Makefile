# `make train` and `make test` set everything up on a fresh machine: they create .venv if it is
# missing and install the package with its dev extra into it, then act.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: train test test-fast lint bench zoo-table zoo-list tensorboard

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## train the default model (LeNet-5) on the embedded digits; ARGS="model=resnet18 ..." adds overrides
train: $(STAMP)
	$(PY) train.py $(ARGS)

## the whole test suite, slow tests included (as CI runs it)
test: $(STAMP)
	$(PY) -m pytest $(ARGS)

## the suite without the slow-marked tests, for a quick local check
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(ARGS)

## the linter and the formatter's check, both of which the code must pass
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: $(STAMP)
	$(PY) benchmarks/run.py $(ARGS)

## the README's table of every model; `make zoo-list ARGS="--input-size 32 --in-chans 1"` for one size
zoo-table: $(STAMP)
	$(PY) -m zoo table

zoo-list: $(STAMP)
	$(PY) -m zoo list $(ARGS)

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir runs
