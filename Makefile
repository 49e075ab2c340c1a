# advaug: `make demo` runs the whole study at small scale offline; `make test` runs the tests.
# Both create .venv on first use. TORCH picks the wheel: the default is the fast CPU build;
# on a GPU machine use `make TORCH=torch==2.14.1 ...` (a CUDA build), or any torch 2.11-2.14.

PY      ?= python3
VENV    ?= .venv
TORCH   ?= torch==2.13.0
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
OUT     ?= runs/demo
JOBS    ?= 2
export GLIBC_TUNABLES ?= glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184

.PHONY: demo test test-all lint format bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/advaug study --preset demo --out $(OUT)

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(JOBS) -q

test-all: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(JOBS) -q --runslow

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_loader.py
	$(BIN)/python benchmarks/bench_classifier.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
