# make repro     : create .venv if needed, then run the whole pipeline (dvc repro) on params.yaml
# make test      : create .venv if needed, then run the test suite (all of it)
# make test-fast : the tests not marked slow (no pipeline notebook, no training run over a few seconds)
# make sync      : rewrite the notebooks' parameters cells (the key list of each params.yaml section)
# make rehearsal : every stage under profile rehearsal (the full profile with small local stand-ins) in outputs/rehearsal
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: venv test test-fast repro check sync clean-outputs rehearsal

venv: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --requirement requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --editable .
	$(BIN)/python -c "from rlbff_lib.core.stage import ensure_kernel; ensure_kernel()"
	@touch $@

test: venv
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow"

repro: venv
	$(BIN)/python -m rlbff_lib.core.stage check
	$(BIN)/dvc repro

check: venv
	$(BIN)/python -m rlbff_lib.core.stage check

rehearsal: venv
	rm -rf outputs/rehearsal
	$(BIN)/python -m rlbff_lib.stages.rehearsal --root outputs/rehearsal

sync: venv
	$(BIN)/python -m rlbff_lib.core.stage sync
