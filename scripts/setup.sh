#!/usr/bin/env bash
# Creates .venv and installs the package with the tested versions (constraints.txt). Idempotent:
# re-installs only when pyproject.toml or the constraints changed.
#
#   scripts/setup.sh                     .venv with constraints.txt (LiteLLM 1.106.0, the lowest tested)
#   scripts/setup.sh --litellm 1.108.0   .venv-litellm-1.108.0: the same pins, except LiteLLM and what
#                                        constraints-litellm-1.108.0.txt pins with it (certifi, the proxy
#                                        extras); without such a file only litellm==VERSION is pinned
#                                        and pip picks the packages released with it
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

litellm=""
while [ $# -gt 0 ]; do
  case "$1" in
    --litellm) litellm="${2:?--litellm needs a version}"; shift 2 ;;
    --litellm=*) litellm="${1#--litellm=}"; shift ;;
    *) echo "setup.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ -z "$litellm" ]; then
  venv=.venv
  constraints=constraints.txt
  extras='.[proxy,dev,semantic,bench,memcached]'
  inputs=(pyproject.toml constraints.txt)
else
  venv=".venv-litellm-$litellm"
  overrides="constraints-litellm-$litellm.txt"
  constraints="$venv/constraints.txt"
  # What the tests run against another LiteLLM need (semantic: numpy for the OpenAI SDK tests).
  extras='.[proxy,dev,semantic,memcached]'
  inputs=(pyproject.toml constraints.txt)
  [ -f "$overrides" ] && inputs+=("$overrides")
fi

if [ ! -x "$venv/bin/python" ]; then
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is required"'
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
fi

if [ -n "$litellm" ]; then
  # constraints.txt without the pins the override file (or litellm==VERSION alone) replaces.
  "$PYTHON" - "$litellm" "$overrides" "$constraints" <<'EOF'
import re
import sys
from pathlib import Path

version, overrides_path, out = sys.argv[1:]
def name(line: str) -> str | None:
    match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(==|@)", line)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else None
overrides = Path(overrides_path).read_text().splitlines() if Path(overrides_path).exists() else []
pins = [line for line in overrides if name(line)]
if not any(name(line) == "litellm" for line in pins):
    pins.append(f"litellm=={version}")
replaced = {name(line) for line in pins}
base = [line for line in Path("constraints.txt").read_text().splitlines() if name(line) not in replaced]
Path(out).write_text("\n".join([*base, f"# --litellm {version}", *pins]) + "\n")
EOF
fi

stamp=$venv/.installed-$(cat "${inputs[@]}" | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "installing dependencies into $venv (litellm[proxy] pinned in $constraints; ~1-2 min the first time)..."
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c "$constraints" -e "$extras" \
    2>&1 | grep -v "^WARNING: Location" || true
  "$venv/bin/python" -c "import litellm_cache_plugin, litellm" 2>/dev/null || { echo "install failed"; exit 1; }
  if [ -n "$litellm" ]; then
    installed=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')
    [ "$installed" = "$litellm" ] || { echo "$venv has litellm $installed, not $litellm"; exit 1; }
  fi
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
