"""`atax eval --quick`: a first try that caps items and generated tokens, says so, and lets an
explicit --limit / --max-gen-toks win."""

from __future__ import annotations

import json

from conftest import run_atax

from harness.store import ResultsStore


def test_quick_caps_items_and_generation_and_says_so(tmp_path):
    result = run_atax("eval", "builtin:tiny-llama", "--suite", "knowledge", "--benchmarks", "arc_challenge",
                      "--data-dir", "builtin:toy-knowledge", "--quick", "--limit", "1",
                      "--results", str(tmp_path / "res"), "--json", "--backend", "hf",
                      "-B", "prefix_cache=false", "--no-cache")  # no cached answers: the engine runs
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["arc_challenge"]["n"] == 1  # the explicit --limit wins
    assert "--quick: at most 1 items per task, at most 128 generated tokens" in result.stderr
    with ResultsStore.open(tmp_path / "res") as store:
        (row, *_) = store.scores(benchmark="arc_challenge")
    assert row.run_meta["max_gen_toks"] == 128 and row.run_meta["limit"] == 1
    # --backend-option reached the backend: lm-eval's own path answered
    assert row.run_meta["backend_options"]["prefix_cache"] is False
    assert row.run_meta["engine_paths"]["loglikelihood"].startswith("plain: disabled")
