# make repro : create .venv if needed, then run the whole pipeline (dvc repro) on params.yaml
# make test  : create .venv if needed, then run the test suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: venv test repro check sync clean-outputs

venv: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --requirement requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --editable .
	$(BIN)/python -c "from rlbff_lib.core.stage import ensure_kernel; ensure_kernel()"
	@touch $@

test: venv
	$(BIN)/python -m pytest -q

repro: venv
	$(BIN)/python -m rlbff_lib.core.stage check
	$(BIN)/dvc repro

check: venv
	$(BIN)/python -m rlbff_lib.core.stage check

sync: venv
	$(BIN)/python -m rlbff_lib.core.stage sync
