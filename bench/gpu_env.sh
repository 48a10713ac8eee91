#!/usr/bin/env bash
# Prepares .whl/ (git-ignored through .git/info/exclude) with what the device machine's Python 3.12
# image lacks for bench/gpu_trial.py: lm-eval and the few packages it and Ray import that the image
# does not hold, as cp312 wheels, plus Ray itself as an xz tarball. Ray's wheel (79 MB) is over the
# 64 MiB a run may carry, so the tarball leaves out what a local cluster of plain tasks and actors
# never imports (Java jars, RLlib, Data, Train, Tune, LLM, the dashboard's web client).
# Versions follow this checkout's .venv. Usage: bash bench/gpu_env.sh  (needs PyPI through pip)
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qsx '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
version() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
PLAT=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
rm -rf .whl && mkdir .whl
python3 -m pip download -q "${PLAT[@]}" -d .whl "lm_eval==$(version lm_eval)" "dill==$(version dill)" \
  "jsonschema==$(version jsonschema)" "jsonschema-specifications==$(version jsonschema-specifications)" \
  "referencing==$(version referencing)" "rpds-py==$(version rpds-py)"
tmp=$(mktemp -d)
python3 -m pip download -q "${PLAT[@]}" -d "$tmp" "ray==$(version ray)"
(cd "$tmp" && unzip -q ray-*.whl && rm ray-*.whl \
  && rm -rf ray/jars ray/rllib ray/data ray/train ray/tune ray/llm ray/dashboard/client \
  && tar -cf - . | xz -T0 -9) > .whl/ray.tar.xz
rm -rf "$tmp"
du -sh .whl
