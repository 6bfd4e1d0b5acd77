"""The knowledge suite's loaders on the real benchmark samples in ../shared/data (original release
formats, converted into the `--data-dir` layout): schema check, lm-eval task loading, prompts equal
to lm-eval's own configs, and reference answers scoring 1.0."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import run_atax
from knowledge_fixtures import stock_prompt

from harness.store import ResultsStore
from suites.knowledge.layout import check_data_dir
from suites.knowledge.originals import convert

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

# dataset -> its sample in ../shared/data (see MANIFEST.md there)
SAMPLES = {
    "gsm8k": "gsm8k/test.sample.jsonl",
    "mmlu": "mmlu/data",
    "bbh": "bbh/bbh",
    "arc_challenge": "arc/ARC-Challenge-Test.sample.jsonl",
    "openbookqa": "openbookqa/test.sample.tsv",
    "race_middle": "race/test/middle.sample.jsonl",  # RACE-middle: its own benchmark (race is RACE-high)
    "truthfulqa": "truthfulqa/mc_task.sample.json",
    "humaneval": "humaneval/HumanEval.sample.jsonl",
    "mbpp": "mbpp/mbpp.sample.jsonl",
}


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    out = tmp_path_factory.mktemp("real")
    for dataset, relative in SAMPLES.items():
        if dataset == "mmlu":  # one through the CLI, the rest through the function it calls
            proc = run_atax("data", "convert", "mmlu", str(SHARED_DATA / relative), "--to", str(out))
            assert proc.returncode == 0, proc.stderr
        else:
            convert(dataset, SHARED_DATA / relative, out)
    return out


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_converted_samples_pass_the_schema_check(real_dir: Path) -> None:
    check = check_data_dir(real_dir, list(SAMPLES), allow_partial=True)
    assert check.problems == []
    assert check.present["mmlu"] == ("abstract_algebra", "anatomy", "college_computer_science",
                                     "high_school_chemistry", "high_school_mathematics")
    assert check.present["bbh"] == ("boolean_expressions", "date_understanding", "word_sorting")
    proc = run_atax("data", "check", str(real_dir), "--allow-partial", "--benchmarks", ",".join(SAMPLES))
    assert proc.returncode == 0, proc.stderr
    assert "gsm8k test: partial (50 of 1319 questions)" in proc.stdout.splitlines()
    strict = run_atax("data", "check", str(real_dir), "--benchmarks", ",".join(SAMPLES))
    assert strict.returncode == 2 and "52 of 57 mmlu subsets missing" in strict.stderr
    anatomy = _rows(real_dir / "mmlu" / "anatomy" / "dev.jsonl")
    assert anatomy[0]["choices"][0] == "The first pharyngeal arch" and anatomy[0]["answer"] == 3  # D
    race = _rows(real_dir / "race_middle" / "test.jsonl")
    assert sum(len(eval(r["problems"])) for r in race) == 20  # 20 questions, regrouped per article
    assert [r["task_id"] for r in _rows(real_dir / "mbpp" / "test.jsonl")] == list(range(11, 21))
    mc1 = _rows(real_dir / "truthfulqa" / "validation.jsonl")[0]["mc1_targets"]
    assert mc1["labels"][0] == 1 and sum(mc1["labels"]) == 1


def test_tiny_model_runs_the_real_samples_with_lm_eval_prompts(real_dir: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from lm_eval.utils import hash_string

    from suites.knowledge.code_metric import preload_lm_eval_code_modules

    names = ["gsm8k", "mmlu", "bbh", "arc_challenge", "openbookqa", "race_middle", "truthfulqa", "humaneval", "mbpp"]
    proc = run_atax("eval", "builtin:tiny-llama", "--benchmarks", ",".join(names), "--data-dir", str(real_dir),
                    "-o", "allow_partial=true",
                    "--allow-code-execution", "--limit", "1", "--max-gen-toks", "8", "--batch-size", "16",
                    "--results", str(tmp_path), "--json", "--quiet", timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert list(summary) == names and summary["mmlu"]["n"] == 5 and summary["bbh"]["n"] == 3
    monkeypatch.setenv("HF_ALLOW_CODE_EVAL", "1")
    preload_lm_eval_code_modules()
    with ResultsStore.open(tmp_path) as store:
        assert store.scores(benchmark="mmlu")[0].run_meta["data"]["partial"] is True
        assert store.scores(benchmark="race_middle")[0].run_meta["data"]["completeness"]["status"] == "partial"
        for name in names:
            task, prompt = stock_prompt(name, real_dir)
            task = "race_middle" if name == "race_middle" else task  # lm-eval's race config, renamed
            stored = [i for i in store.items(checkpoint="builtin:tiny-llama", benchmark=name)
                      if i.extra["task"] == task and i.extra["doc_id"] == 0]
            assert stored and stored[0].extra["prompt_hash"] == hash_string(prompt), name


def test_reference_answers_of_the_real_samples_score_one(real_dir: Path, tmp_path: Path) -> None:
    rows = []
    for i, r in enumerate(_rows(real_dir / "gsm8k" / "test.jsonl")):
        reasoning, final = r["answer"].split("####")
        cot = re.sub(r"<<[^>]*>>", "", reasoning).strip().replace("\n", " ")
        rows.append({"benchmark": "gsm8k", "doc_id": i, "completion": f" {cot} The answer is {final.strip()}."})
    rows += [{"benchmark": "humaneval", "doc_id": i, "completion": r["canonical_solution"]}
             for i, r in enumerate(_rows(real_dir / "humaneval" / "test.jsonl"))]
    rows += [{"benchmark": "mbpp", "doc_id": i, "completion": r["code"]}
             for i, r in enumerate(_rows(real_dir / "mbpp" / "test.jsonl"))]
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = run_atax("eval", "--backend", "answers", "--answers", str(answers), "--benchmarks", "gsm8k,humaneval,mbpp",
                    "--data-dir", str(real_dir), "--allow-code-execution", "--results", str(tmp_path / "res"),
                    "--json", "--quiet", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "gsm8k": {"exact_match,flexible-extract": 1.0, "exact_match,strict-match": 1.0, "n": 50},
        "humaneval": {"pass@1": 1.0, "n": 20},
        "mbpp": {"pass@1": 1.0, "n": 10},
    }
