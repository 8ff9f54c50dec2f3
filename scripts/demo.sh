#!/usr/bin/env bash
# The demo: a real LiteLLM proxy with the plugin (embedded memory backend) in front of Ollama on
# localhost:11434 if one answers, otherwise in front of the bundled Ollama simulator.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export LITELLM_LOCAL_MODEL_COST_MAP=True
exec .venv/bin/python -m tools.demo "$@"
