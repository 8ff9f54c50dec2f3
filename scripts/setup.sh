#!/usr/bin/env bash
# Creates .venv and installs the package with the tested versions (constraints.txt). Idempotent:
# re-installs only when pyproject.toml or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is required"'
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
stamp=.venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "installing dependencies (litellm[proxy] pinned in constraints.txt; ~1-2 min the first time)..."
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[proxy,dev,semantic,bench,memcached]' \
    2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import litellm_cache_plugin, litellm" 2>/dev/null || { echo "install failed"; exit 1; }
  rm -f .venv/.installed-*
  touch "$stamp"
fi
