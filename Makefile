# Two commands do everything on a fresh machine with Python >= 3.10 and make:
#   make train   create .venv, install, train on configs/default.yaml, evaluate against baselines
#   make test    create .venv, install, run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: train test install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned: a bare `torch` pulls a multi-GB CUDA build; 2.13.0 is the CPU wheel.
$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/hmarl train --config configs/default.yaml --name default --time-budget 480

test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/hmarl bench-twin --json

clean:
	rm -rf $(VENV) *.egg-info
