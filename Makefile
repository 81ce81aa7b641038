# londi-bench: every target sets up its own virtual environment first (pinned installs).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_VERSION := 2.13.0
# Machines that keep wheels on disk (the CPU torch wheel) get them from there; elsewhere the CPU
# build comes from PyTorch's CPU index, since PyPI's torch wheel for Linux is a multi-GB CUDA build.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
TORCH_SOURCE := $(if $(FIND_LINKS),$(FIND_LINKS),--index-url https://download.pytorch.org/whl/cpu)
PROFILE ?= cpu
ARGS ?=
# `make test` runs the test files on this many processes (pytest-xdist; a file's tests stay in one process, so its
# module fixtures, such as a server it starts, are made once). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
# torch threads per test process: 2 processes of 2 threads each on 2 cores wait on each other at every parallel region.
TEST_THREADS ?= 1
# `make scaling`: the local Ray sizes, and the sweep run serially and on each (every kind of cell, on babyai/Mixed).
WORKERS ?= 2
SCALING_SWEEP ?= --profile $(PROFILE) --tasks babyai/Mixed --sweep-tasks babyai/Mixed --seeds 0 1 2 --routers quick_only \
	deepthink_only random_switch[p=0.5] confidence_cascade[threshold=0.5] --learned londi_sac[c=0.003] londi_b[budget=4] \
	--controls --sampled 1.0 --hindsight False
# `make ui`: the MLflow UI over the project's store, on this machine only.
TRACKING ?= sqlite:///mlflow.db
UI_PORT ?= 5000

.PHONY: help setup test reproduce regress calibrate models bench docs lint report clean ui scaling

help:
	@echo "make reproduce   run the comparison (PROFILE=$(PROFILE)), print the table, write results/"
	@echo "make test        run the test suite (real envs, real tiny models, a temp MLflow store)"
	@echo "make regress     rerun the smoke profile, fail on metrics that left results/smoke/reference.json"
	@echo "                 (ARGS=--update rewrites the reference)"
	@echo "make calibrate   measure each model's cost per call on this machine (PROFILE=$(PROFILE)), for priced costs"
	@echo "                 (ARGS=--force measures again a calibration that is still fresh)"
	@echo "make docs        regenerate REPRODUCE.md from results/"
	@echo "make models      retrain the offline QUICK and DEEPTHINK of PROFILE"
	@echo "make bench       pytest-benchmark suite (env steps/s, decision latency), JSON to results/"
	@echo "make scaling     one sweep serially and on a local Ray (WORKERS=$(WORKERS)): wall time, overhead per cell"
	@echo "make ui          the MLflow UI over the project's runs on http://127.0.0.1:$(UI_PORT) (TRACKING=$(TRACKING))"
	@echo "make lint        ruff"
	@echo "make clean       remove the venv, caches, MLflow store"

setup: $(STAMP)

# torch is installed only when the venv has none: a GPU user installs their CUDA build first and keeps it.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SOURCE) torch==$(TORCH_VERSION)
	$(PY) -m pip install -q $(FIND_LINKS) -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

test: setup
	OMP_NUM_THREADS=$(TEST_THREADS) $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(ARGS)

reproduce: setup
	$(PY) -m bench.reproduce --profile $(PROFILE) $(ARGS)

regress: setup
	$(PY) -m bench.regress $(ARGS)

calibrate: setup
	$(PY) -m bench.calibrate --profile $(PROFILE) $(ARGS)

docs: setup
	$(PY) -m bench.reporting.reproduce_doc $(ARGS)

models: setup
	$(PY) -m bench.models --profile $(PROFILE) --retrain $(ARGS)

bench: setup
	$(PY) -m pytest -q tests/test_benchmarks.py tests/test_benchmarks_lm.py --benchmark-only --benchmark-json results/benchmarks.json $(ARGS)

scaling: setup
	$(PY) -m bench.scaling --out results/$(PROFILE)/executors --workers $(WORKERS) --sweep="$(SCALING_SWEEP)" $(ARGS)

ui: setup
	$(VENV)/bin/mlflow ui --backend-store-uri $(TRACKING) --host 127.0.0.1 --port $(UI_PORT)

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .cache mlflow.db mlartifacts mlruns .pytest_cache .ruff_cache .benchmarks *.egg-info
