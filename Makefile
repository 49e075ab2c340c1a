# advaug: `make demo` runs the whole study at small scale offline; `make test` runs the tests.
# Both create .venv on first use and install the pinned versions of constraints.txt.
# TORCH picks the torch build, TORCH_INDEX where pip looks for it:
#   make                                   torch 2.13.0 from pip's usual places (on this project's
#                                          machines a local CPU wheel; on an ordinary Linux machine
#                                          PyPI's CUDA build, several GB)
#   make TORCH_INDEX=https://download.pytorch.org/whl/cpu     the CPU build anywhere
#   make TORCH=torch==2.14.1               another version (any torch >= 2.11)
# Changing TORCH or TORCH_INDEX, pyproject.toml or constraints.txt reinstalls on the next make.

PY          ?= python3
VENV        ?= .venv
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS      ?= test,tensorboard,autoattack
BIN         := $(VENV)/bin
STAMP       := $(VENV)/.installed
TORCH_SPEC  := $(VENV)/.torch-spec
OUT         ?= runs/demo
JOBS        ?= 2
export GLIBC_TUNABLES ?= glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184

TORCH_ARGS := "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))

.PHONY: demo test test-all lint format bench mutation clean venv lock FORCE

venv: $(STAMP)

# The torch request as a file that changes only when TORCH or TORCH_INDEX does.
$(TORCH_SPEC): FORCE
	@mkdir -p $(VENV)
	@echo '$(TORCH_ARGS)' | cmp -s - $@ || echo '$(TORCH_ARGS)' > $@

$(STAMP): pyproject.toml constraints.txt $(TORCH_SPEC)
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_ARGS)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	@touch $(STAMP)

# Re-pin constraints.txt to the newest versions pyproject.toml allows (then run make test).
lock:
	rm -rf .lock-venv && $(PY) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --upgrade pip
	.lock-venv/bin/python -m pip install -q $(TORCH_ARGS)
	.lock-venv/bin/python -m pip install -q ".[$(EXTRAS),mutation]"
	{ grep '^#' constraints.txt; .lock-venv/bin/python -m pip freeze --all \
	  | grep -v -i '^advaug\|^torch==\|^wheel==\|^nvidia-\|^cuda-\|^triton==' | LC_ALL=C sort -f; \
	} > constraints.txt.new && mv constraints.txt.new constraints.txt
	rm -rf .lock-venv

# Where the demo looks for MNIST: $ADVAUG_DATA if set, else ../shared/data where this project's
# machines keep it, else ./data (downloaded there on first use; offline, the embedded digits).
DEMO_DATA ?= $(or $(ADVAUG_DATA),$(wildcard ../shared/data),data)

demo: $(STAMP)
	ADVAUG_DATA=$(DEMO_DATA) $(BIN)/advaug study --preset demo --out $(OUT)

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples tools
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(JOBS) -q

test-all: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(JOBS) -q --runslow

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples tools
	$(BIN)/ruff format --check src tests benchmarks examples tools

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks examples tools
	$(BIN)/ruff check --fix src tests benchmarks examples tools

# Mutation testing of the critical modules (tools/mutation.py; docs/MUTATION.md has the last
# score). Not part of `make test`: it takes minutes per module. MODULES=pgd,fgsm runs some of
# them (python tools/mutation.py --list names them); one worker, niced, one torch thread.
MODULES ?=
mutation: $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[mutation]"
	OMP_NUM_THREADS=1 nice -n 10 $(BIN)/python tools/mutation.py --modules "$(MODULES)"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_loader.py
	$(BIN)/python benchmarks/bench_classifier.py

# Removes what make builds; never runs/, where results live (delete those yourself).
clean:
	rm -rf $(VENV) .lock-venv .pytest_cache .ruff_cache build src/advaug.egg-info
