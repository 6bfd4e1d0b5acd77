#!/usr/bin/env bash
# The project's test command: every stage, offline. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${ATAX_VENV:-.venv}"
python="python3"
[ -x "$venv/bin/python" ] && python="$venv/bin/python"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$python" -m ruff check .
"$python" -m pytest -q -p no:cacheprovider "$@"
