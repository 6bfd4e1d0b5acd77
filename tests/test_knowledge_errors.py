"""Mistakes a user can make with `atax eval` / `atax data`: one line on stderr, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_atax
from knowledge_fixtures import write_fixture_data


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fixture_data(tmp_path_factory.mktemp("knowledge-data"))


def _fails(*args: str) -> str:
    proc = run_atax(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: "), proc.stderr
    assert proc.stdout == ""
    return lines[-1]


def test_unknown_benchmark(tmp_path: Path) -> None:
    line = _fails("eval", "builtin:tiny-llama", "--benchmarks", "gsm8k,mmlu_pro", "--results", str(tmp_path))
    assert line.startswith("error: suite 'knowledge': option 'benchmarks': unknown benchmark 'mmlu_pro'; known: gsm8k, ")


def test_code_benchmarks_need_opt_in(tmp_path: Path, data: Path) -> None:
    line = _fails("eval", "builtin:tiny-llama", "--data-dir", str(data), "--results", str(tmp_path))
    assert line == ("error: humaneval, mbpp run model-written code; pass --allow-code-execution to run it in "
                    "the sandbox, or leave them out with --benchmarks")


def test_missing_data_dir(tmp_path: Path) -> None:
    line = _fails("eval", "builtin:tiny-llama", "--benchmarks", "gsm8k", "--data-dir", str(tmp_path / "nope"),
                  "--results", str(tmp_path))
    assert line.startswith(f"error: --data-dir: data dir {tmp_path / 'nope'} not found;")


def test_wrong_schema_names_file_line_and_column(tmp_path: Path, data: Path) -> None:
    bad = tmp_path / "bad"
    write_fixture_data(bad)
    (bad / "gsm8k" / "test.jsonl").write_text(json.dumps({"q": "1+1?", "answer": "#### 2"}) + "\n")
    (bad / "arc_challenge" / "test.jsonl").unlink()
    line = _fails("eval", "builtin:tiny-llama", "--benchmarks", "gsm8k,arc_challenge", "--data-dir", str(bad),
                  "--results", str(tmp_path))
    assert line == (f"error: --data-dir: {bad}/gsm8k/test.jsonl:1: missing column 'question' (openai/gsm8k schema: "
                    f"question, answer); {bad}/arc_challenge/test.jsonl: missing (the allenai/ai2_arc 'test' split)")
    check = run_atax("data", "check", str(bad))
    assert check.returncode == 2
    assert check.stderr.splitlines()[:2] == [
        f"{bad}/gsm8k/test.jsonl:1: missing column 'question' (openai/gsm8k schema: question, answer)",
        f"{bad}/arc_challenge/test.jsonl: missing (the allenai/ai2_arc 'test' split)"]
    assert check.stderr.splitlines()[-1].startswith(f"error: {bad}: 2 problem(s); the first: ")


def test_data_check_accepts_the_fixture_layout(data: Path) -> None:
    proc = run_atax("data", "check", str(data), "--allow-partial")  # a few items each: partial, not wrong
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"{data}: ok (9 partial)"


def test_hub_unreachable_without_data_dir(tmp_path: Path) -> None:
    line = _fails("eval", "builtin:tiny-llama", "--benchmarks", "gsm8k", "--results", str(tmp_path), "--quiet")
    assert line.startswith("error: gsm8k: cannot load its data from the hub (")
    assert line.endswith("offline, pass --data-dir DIR with local copies (README 'Knowledge suite data'; "
                         "`atax data pull` writes them)")


def test_pull_offline_fails_in_one_line(tmp_path: Path) -> None:
    line = _fails("data", "pull", "--to", str(tmp_path / "out"), "--benchmarks", "gsm8k")
    assert line.startswith("error: cannot download openai/gsm8k (main, test): ")


def test_backend_and_option_mistakes(tmp_path: Path, data: Path) -> None:
    assert _fails("eval", "--benchmarks", "gsm8k", "--data-dir", str(data), "--backend", "hf",
                  "--results", str(tmp_path)) == ("error: CHECKPOINT_OR_MODEL is missing; the hf backend "
                                                  "evaluates a checkpoint or model")
    assert _fails("eval", "builtin:tiny-llama", "--answers", str(tmp_path / "a.jsonl"), "--backend", "hf",
                  "--results", str(tmp_path)) == ("error: backend 'hf': unknown option 'answers'; it takes: "
                                                  "batch_size, prefix_cache, generation_rows, token_budget, "
                                                  "dtype, device, max_length")
    assert _fails("eval", "--backend", "answers", "--answers", str(tmp_path / "none.jsonl"),
                  "--results", str(tmp_path)).startswith("error: backend 'answers': option 'answers': file ")
    assert _fails("eval", "builtin:tiny-llama", "--backend", "hf", "-B", "colour=blue", "--results",
                  str(tmp_path)).startswith("error: backend 'hf': unknown option 'colour'; it takes: ")
    assert _fails("eval", "builtin:tiny-llama", "-B", "loglikelihood_engine", "--results", str(tmp_path)) == (
        "error: --backend-option: expected KEY=VALUE, got 'loglikelihood_engine'")
    assert _fails("eval", "builtin:tiny-llama", "-o", "colour=blue", "--results", str(tmp_path)).startswith(
        "error: suite 'knowledge': unknown option 'colour'; it takes: benchmarks, limit, ")
    assert _fails("eval", "builtin:tiny-llama", "--backend", "tpu", "--results", str(tmp_path)).startswith(
        "error: unknown backend 'tpu'; known: answers, hf")
