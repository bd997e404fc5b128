# The two README commands: `make demo` and `make test`. Each creates .venv if needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP_FLAGS := --quiet --disable-pip-version-check --progress-bar off
# make test's test processes (pytest-xdist): each file runs in one of them, with its own Ray session
TEST_WORKERS ?= 2

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[dev]' 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
	$(BIN)/python -c "import tunekit, torch, ray, mlflow, mnist1d" 
	touch $(STAMP)

## make demo: the whole disciplined search (range test → momentum → weight decay → final) on the embedded MNIST-1D preset
demo: $(STAMP)
	$(BIN)/tunekit search mnist1d --storage runs

## make test: lint, type-check and the whole test suite
test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check tunekit tests bench
	$(BIN)/ruff format --check tunekit tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

## make unit: the fast tests only (no Ray, no training)
unit: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

## make bench: CPU benchmarks, ratios measured side by side (~30 min; bench/gpu_epoch.py needs a GPU)
bench: $(STAMP)
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/trial_start.py
	$(BIN)/python bench/decision_latency.py
	$(BIN)/python bench/snapshot_vs_grid.py
	$(BIN)/python bench/search_efficiency.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
