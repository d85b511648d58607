# `make repro`: set up .venv, pull the data, run the pipeline.  `make test`: set up, run the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# dvc runs each stage's `python -m stages.X` through the shell: make it the venv's python.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup data repro test clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

data: setup
	@$(BIN)/python -m twotower.fetch

repro: data
	$(BIN)/dvc repro

test: setup
	@$(BIN)/python -m twotower.fetch --optional
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
