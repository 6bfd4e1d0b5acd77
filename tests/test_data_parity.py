"""bench/parity.py on the tiny model: the same items through atax and through lm-eval's own CLI on the
task YAMLs atax derives agree item by item (predictions and item scores), multiple choice and generation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_parity_tool_agrees_item_by_item_on_the_tiny_model() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "parity.py"), "builtin:tiny-llama", "--benchmarks",
                           "arc_challenge,gsm8k", "--data-dir", "builtin:toy-knowledge", "--limit", "2",
                           "--max-gen-toks", "8", "--json"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {row["benchmark"]: row for row in json.loads(proc.stdout.strip().splitlines()[-1])}
    assert set(rows) == {"arc_challenge", "gsm8k"}
    for row in rows.values():
        assert row["items"] == 2 and row["same_prediction"] == row["same_score"] == 2, row
        assert row["only_atax"] == row["only_lm_eval"] == 0 and row["atax"] == row["lm_eval"]
    assert rows["gsm8k"]["metric"] == "exact_match,strict-match" and rows["arc_challenge"]["max_loglikelihood_gap"] < 1e-4


def test_compare_counts_disagreements() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from parity import compare

    from harness.evaluate.protocols import BenchmarkResult
    from harness.store import ItemRecord, Score

    def sample(doc_id: int, answer: str, correct: float) -> dict:
        return {"doc_id": doc_id, "doc_hash": f"h{doc_id}", "target": "4", "filter": "strict-match",
                "filtered_resps": [answer], "resps": [[answer]], "exact_match": correct, "metrics": ["exact_match"],
                "arguments": [("q", {})]}

    lm_eval = {"results": {"gsm8k_cot": {"exact_match,strict-match": 0.5, "exact_match,flexible-extract": 0.5}}, "n-samples": {"gsm8k_cot": {"effective": 2}},
               "configs": {"gsm8k_cot": {"output_type": "generate_until"}}, "versions": {}, "n-shot": {},
               "samples": {"gsm8k_cot": [sample(0, "4", 1.0), sample(1, "5", 0.0)]}}
    items = [ItemRecord("0", "h0", "4", "4", 1.0, {"task": "gsm8k_cot", "doc_id": 0}),
             ItemRecord("1", "h1", "4", "4", 1.0, {"task": "gsm8k_cot", "doc_id": 1})]
    mine = BenchmarkResult("gsm8k", "exact_match,strict-match", [Score("exact_match,strict-match", 1.0)], items)
    (row,) = compare([mine], lm_eval)
    assert (row["items"], row["same_prediction"], row["same_score"], row["disagreeing"]) == (2, 1, 1, ["1"])


@pytest.mark.slow
@pytest.mark.realdata
def test_parity_tool_on_the_real_small_model(shared_data: Path, tmp_path: Path, smollm2_dir: Path) -> None:
    from suites.knowledge.originals import convert

    convert("arc_challenge", shared_data / "arc/ARC-Challenge-Test.sample.jsonl", tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "parity.py"), "builtin:smollm2-135m-instruct",
                           "--benchmarks", "arc_challenge", "--data-dir", str(tmp_path), "--limit", "4", "--json"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row["items"] == row["same_prediction"] == row["same_score"] == 4 and row["max_loglikelihood_gap"] < 1e-3
