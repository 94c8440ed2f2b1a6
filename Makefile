# Two commands a new user needs: `make run` (set up + dvc repro) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
# The CPU build on this kind of machine; e.g. TORCH_SPEC="torch==2.13.0" TORCH_INDEX=https://download.pytorch.org/whl/cu126
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: setup setup-dev run test test-fast lint ui bench compose clean

# What running needs: torch, then mlpflow with its dependencies (DVC and MLflow among them).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e .
	touch $@

# What the tests and the linters add: pytest and its plugins, ruff, import-linter, Playwright,
# psycopg, and the launchers' plugins (submitit, Ray) whose tests run in CI.
$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[dev,cluster,ray]"
	touch $@

setup: $(VENV)/.installed

setup-dev: $(VENV)/.installed-dev

run: setup  ## the pipeline on the default dataset, tracked in ./mlflow.db
	dvc repro
	mlpflow report

# One compute thread per test process: two workers on two cores, each torch (and every process
# a test starts) using one, rather than four threads stalling each other at every parallel region.
test: setup-dev  ## the whole suite, slow tests included
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 -rs --durations=15

test-fast: setup-dev
	$(BIN)/python -m pytest -n 2 -m "not slow"

lint: setup-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

ui: setup  ## MLflow UI over ./mlflow.db on http://127.0.0.1:5000
	mlpflow ui

bench: setup
	$(BIN)/python benchmarks/train_throughput.py --n 100000 --epochs 5
	$(BIN)/python benchmarks/train_throughput.py --n 100000 --epochs 5 --features 24 --categorical 8
	$(BIN)/python benchmarks/epoch_profile.py
	$(BIN)/python benchmarks/whole_process.py
	$(BIN)/python benchmarks/pipeline_overhead.py
	$(BIN)/python benchmarks/sweep_overhead.py
	$(BIN)/python benchmarks/data_scale.py

compose: setup  ## regenerate params.yaml from conf/
	mlpflow compose

clean:
	rm -rf data/prepared data/cache models reports outputs multirun
