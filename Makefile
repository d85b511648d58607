# `make repro`: set up .venv, pull the data, run the pipeline.  `make test`: set up, run the tests.
# `make browser`: Debian's chromium, which the web page's browser test drives (Playwright
# cannot download its own browsers offline); apt-get as root, through sudo otherwise.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# dvc runs each stage's `python -m stages.X` through the shell: make it the venv's python.
export PATH := $(abspath $(BIN)):$(PATH)

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup data repro test browser clean-venv

setup: $(VENV)/.installed

# uv installs in ~25 s what pip takes ~100 s for, with pip's own settings (tools/uv_install.py);
# pip does it if uv cannot.
$(VENV)/.installed: pyproject.toml tools/uv_install.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python tools/uv_install.py -e '.[test]'
	touch $@

data: setup
	@$(BIN)/python -m twotower.data.fetch

repro: data
	$(BIN)/dvc repro

test: setup
	@$(BIN)/python -m twotower.data.fetch --optional
	$(BIN)/python -m pytest -q

browser:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; }
	@chromium --version

clean-venv:
	rm -rf $(VENV)
