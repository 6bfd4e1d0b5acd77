"""Know the data: every copy is compared with the official release (complete / partial n of N), the
variants that exist are kept apart (RACE middle vs high, ARC dev vs test), and release files of
another task or variant (sanitized MBPP, TruthfulQA.csv) are refused in one line. Fixtures are tiny
files in each release format; the real samples in ../shared are used where marked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_atax
from knowledge_fixtures import gsm8k_rows, mbpp_rows, write_fixture_data

from harness.errors import UserError
from suites.knowledge.benchmarks import BBH_TASKS, MMLU_SUBJECTS
from suites.knowledge.layout import check_data_dir
from suites.knowledge.official import completeness, count_items, official
from suites.knowledge.originals import convert


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _race_rows(level: str, n: int = 2) -> list[dict]:
    return [{"example_id": f"{level}{i}.txt", "article": f"Article {i}.", "question": f"Q{i}?",
             "options": ["a", "b", "c", "d"], "answer": "A"} for i in range(n)]


def _arc_rows(n: int = 2) -> list[dict]:
    return [{"id": f"Mercury_{i}", "answerKey": "A", "question": {
        "stem": f"Question {i}?", "choices": [{"text": t, "label": label} for t, label in zip("wxyz", "ABCD", strict=True)]}}
        for i in range(n)]


def test_official_counts_add_up() -> None:
    assert official("mmlu", "test").total == 14042 and set(official("mmlu", "test").per_subset) == set(MMLU_SUBJECTS)
    assert official("mmlu", "dev").total == 285 and len(MMLU_SUBJECTS) == 57
    assert official("bbh", "test").total == 6511 and len(BBH_TASKS) == 27
    assert {name: official(name, split).total for name, split in (
        ("gsm8k", "test"), ("arc_challenge", "test"), ("arc_challenge", "validation"), ("openbookqa", "test"),
        ("race", "test"), ("race_middle", "test"), ("truthfulqa", "validation"), ("humaneval", "test"),
        ("mbpp", "test"))} == {"gsm8k": 1319, "arc_challenge": 299, "openbookqa": 500, "race": 3498,
                               "race_middle": 1436, "truthfulqa": 817, "humaneval": 164, "mbpp": 500}
    assert completeness("gsm8k", "test", 1319)["text"] == "complete (1319 questions)"
    assert completeness("gsm8k", "test", 50) == {"status": "partial", "n": 50, "of": 1319, "unit": "questions",
                                                 "text": "partial (50 of 1319 questions)"}
    assert completeness("gsm8k", "test", 1400)["status"] == "not official"
    # A group counts the subsets present against their own sizes: 2 BBH tasks can hold at most 500.
    assert completeness("bbh", "test", 600, ["navigate", "snarks"])["status"] == "not official"
    assert completeness("bbh", "test", 428, ["navigate", "snarks"])["text"] == "partial (428 of 6511 questions)"
    assert count_items("race", [{"problems": repr([{"q": 1}, {"q": 2}])}, {"problems": "[{}]"}]) == 3


def test_a_gsm8k_file_cut_to_50_rows_shows_as_partial(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _jsonl(data / "gsm8k" / "test.jsonl", (gsm8k_rows() * 20)[:50])
    proc = run_atax("data", "check", str(data), "--benchmarks", "gsm8k")
    assert proc.returncode == 2
    assert proc.stdout.splitlines() == ["gsm8k test: partial (50 of 1319 questions)"]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {data}: 1 dataset split(s) differ from the official release (gsm8k test: partial (50 of 1319 "
        "questions)); give the complete files, or pass --allow-partial to accept them (scores are marked partial)")
    lenient = run_atax("data", "check", str(data), "--benchmarks", "gsm8k", "--allow-partial")
    assert lenient.returncode == 0 and lenient.stdout.splitlines()[-1] == f"{data}: ok (1 partial)"


def test_fixture_copy_reports_every_split(tmp_path: Path) -> None:
    data = write_fixture_data(tmp_path / "data")
    check = check_data_dir(data, ["gsm8k", "mmlu", "bbh", "race"])
    assert check.problems == []
    assert check.completeness["mmlu"]["test"]["text"] == "partial (114 of 14042 questions)"
    assert check.completeness["mmlu"]["dev"]["text"] == "complete (285 few-shot examples)"
    assert check.completeness["race"]["test"]["n"] == 6  # 3 articles, 2 questions each
    assert len(check.partial()) == 4  # gsm8k, mmlu test, bbh, race (MMLU's dev split is the whole release)


def test_race_middle_is_not_race_high(tmp_path: Path) -> None:
    middle = _jsonl(tmp_path / "middle.jsonl", _race_rows("middle"))
    with pytest.raises(UserError, match=r"RACE-middle \(example_id middle\*\.txt\), not RACE-high; convert it as "
                                        r"race_middle \(race is lm-eval's RACE-high\)"):
        convert("race", middle, tmp_path / "data")
    assert not (tmp_path / "data" / "race").exists()
    written = convert("race_middle", middle, tmp_path / "data")
    assert written == [tmp_path / "data" / "race_middle" / "test.jsonl"]
    high = _jsonl(tmp_path / "high.jsonl", _race_rows("high", 3))
    with pytest.raises(UserError, match="RACE-high .* not RACE-middle; convert it as race "):
        convert("race_middle", high, tmp_path / "data")
    with pytest.raises(UserError, match="mixes RACE-middle and RACE-high"):
        convert("race", _jsonl(tmp_path / "all.jsonl", _race_rows("middle") + _race_rows("high")), tmp_path / "x")
    convert("race", high, tmp_path / "data")
    check = check_data_dir(tmp_path / "data", ["race", "race_middle"])
    assert check.problems == [] and check.completeness["race_middle"]["test"]["text"] == "partial (2 of 1436 questions)"
    # A middle-school copy dropped under race/ by hand is named as the wrong data, not scored as RACE-high.
    (tmp_path / "data" / "race" / "test.jsonl").write_bytes(
        (tmp_path / "data" / "race_middle" / "test.jsonl").read_bytes())
    problems = check_data_dir(tmp_path / "data", ["race"]).problems
    assert len(problems) == 1 and "a RACE-middle article (middle0.txt) in race/, which holds RACE-high" in problems[0]


def test_arc_dev_is_never_converted_as_test(tmp_path: Path) -> None:
    dev = _jsonl(tmp_path / "ARC-Challenge-Dev.jsonl", _arc_rows(3))
    assert convert("arc_challenge", dev, tmp_path / "data") == [tmp_path / "data/arc_challenge/validation.jsonl"]
    check = check_data_dir(tmp_path / "data", ["arc_challenge"])
    assert check.problems == [f"{tmp_path / 'data/arc_challenge/test.jsonl'}: missing (the allenai/ai2_arc 'test' split)"]
    test = _jsonl(tmp_path / "ARC-Challenge-Test.jsonl", _arc_rows(4))
    assert convert("arc_challenge", test, tmp_path / "data") == [tmp_path / "data/arc_challenge/test.jsonl"]
    assert check_data_dir(tmp_path / "data", ["arc_challenge"]).completeness["arc_challenge"]["test"]["n"] == 4
    for name, message in (("arc.jsonl", "cannot tell which ARC-Challenge split"), ("ARC-Easy-Test.jsonl", "ARC-Easy")):
        with pytest.raises(UserError, match=message):
            convert("arc_challenge", _jsonl(tmp_path / name, _arc_rows()), tmp_path / "other")


def test_sanitized_mbpp_is_refused_in_one_line(tmp_path: Path) -> None:
    sanitized = tmp_path / "sanitized-mbpp.json"
    sanitized.write_text(json.dumps([{"source_file": "x.ipynb", "task_id": 11, "prompt": "Write ...", "code": "",
                                      "test_imports": [], "test_list": ["assert True"]}]), encoding="utf-8")
    proc = run_atax("data", "convert", "mbpp", str(sanitized), "--to", str(tmp_path / "data"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {sanitized}: the sanitized MBPP release (a JSON list; 427 hand-checked tasks with other prompts), not "
        "lm-eval's MBPP; give the full release's mbpp.jsonl (its test split, tasks 11-510, is what lm-eval scores)"]
    assert not (tmp_path / "data").exists()
    full = _jsonl(tmp_path / "mbpp.jsonl", [{**r, "task_id": t} for t, r in zip((5, 11, 12), mbpp_rows(), strict=True)])
    convert("mbpp", full, tmp_path / "data")
    assert check_data_dir(tmp_path / "data", ["mbpp"]).completeness["mbpp"]["test"]["text"] == \
        "partial (2 of 500 problems)"


def test_truthfulqa_csv_names_the_file_to_give(tmp_path: Path) -> None:
    csv = tmp_path / "TruthfulQA.csv"
    csv.write_bytes("\ufeffType,Category,Question,Best Answer\r\nAdversarial,Misconceptions,Q?,A\r\n".encode())
    proc = run_atax("data", "convert", "truthfulqa", str(csv), "--to", str(tmp_path / "data"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: {csv}: TruthfulQA.csv holds the generation task's answers, not the multiple-choice targets; give "
        "data/mc_task.json from the same release"]


@pytest.mark.realdata
def test_real_release_samples(shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="the sanitized MBPP release"):
        convert("mbpp", shared_data / "mbpp/sanitized-mbpp.sample.json", tmp_path)
    with pytest.raises(UserError, match="TruthfulQA.csv holds the generation task's answers"):
        convert("truthfulqa", shared_data / "truthfulqa/TruthfulQA.sample.csv", tmp_path)
    with pytest.raises(UserError, match="RACE-middle"):
        convert("race", shared_data / "race/test/middle.sample.jsonl", tmp_path)
    convert("race_middle", shared_data / "race/test/middle.sample.jsonl", tmp_path)
    convert("arc_challenge", shared_data / "arc/ARC-Challenge-Test.sample.jsonl", tmp_path)
    convert("gsm8k", shared_data / "gsm8k/test.sample.jsonl", tmp_path)
    check = check_data_dir(tmp_path, ["race_middle", "arc_challenge", "gsm8k"])
    assert check.problems == []
    assert check.partial() == ["race_middle test: partial (20 of 1436 questions)",
                               "arc_challenge test: partial (20 of 1172 questions)",
                               "gsm8k test: partial (50 of 1319 questions)"]


@pytest.mark.realdata
@pytest.mark.slow
def test_full_multiple_choice_sets_are_counted(shared_data: Path, tmp_path: Path) -> None:
    full = shared_data / "full"
    if not full.is_dir():
        pytest.skip("../shared/data/full is absent")
    convert("mmlu", full / "mmlu/data", tmp_path)
    convert("race_middle", full / "race/test/middle.jsonl", tmp_path)
    convert("truthfulqa", full / "truthfulqa/mc_task.json", tmp_path)
    convert("openbookqa", full / "openbookqa/test.tsv", tmp_path)
    convert("arc_challenge", full / "arc/ARC-Challenge-Test.jsonl", tmp_path)
    check = check_data_dir(tmp_path, ["mmlu", "race_middle", "truthfulqa", "openbookqa", "arc_challenge"])
    assert check.problems == []
    assert {f"{n} {s}": r["text"] for n, splits in check.completeness.items() for s, r in splits.items()} == {
        "mmlu test": "complete (14042 questions)", "mmlu dev": "complete (285 few-shot examples)",
        "race_middle test": "complete (1436 questions)", "truthfulqa validation": "complete (817 questions)",
        "openbookqa test": "complete (500 questions)",
        "arc_challenge test": "partial (1150 of 1172 questions)"}  # this copy lacks the 22 numeric-label items


@pytest.mark.slow
def test_scores_store_completeness_and_mbpp_setup_code_variant(tmp_path: Path) -> None:
    from harness.store import ResultsStore

    data = write_fixture_data(tmp_path / "data")
    mbpp = mbpp_rows() + [{  # like MBPP task 367: the tests use names only test_setup_code defines
        "task_id": 14, "text": "Write a function to double a number.", "code": "def double(x):\n  return 2 * x",
        "test_list": ["assert double(root) == 14", "assert double(other) == 2", "assert double(0) == 0"],
        "test_setup_code": "root = 7\nother = 1", "challenge_test_list": []}]
    _jsonl(data / "mbpp" / "test.jsonl", mbpp)
    rows = [{"benchmark": name, "doc_id": i, "completion": r["code"]} for name in ("mbpp", "mbpp_setup")
            for i, r in enumerate(mbpp)]
    rows += [{"benchmark": "gsm8k", "doc_id": i, "completion": f" The answer is {r['answer'].split('####')[1].strip()}."}
             for i, r in enumerate(gsm8k_rows())]
    answers = _jsonl(tmp_path / "answers.jsonl", rows)
    proc = run_atax("eval", "--backend", "answers", "--answers", str(answers), "--benchmarks", "gsm8k,mbpp,mbpp_setup",
                    "--data-dir", str(data), "--allow-code-execution", "--results", str(tmp_path / "res"), "--json",
                    "--quiet", timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["mbpp"]["pass@1"] == 0.75 and summary["mbpp_setup"]["pass@1"] == 1.0  # lm-eval never runs setup
    with ResultsStore.open(tmp_path / "res") as store:
        meta = {b: store.scores(benchmark=b)[0].run_meta for b in summary}
    assert meta["gsm8k"]["data"]["completeness"]["text"] == "partial (3 of 1319 questions)"
    assert meta["mbpp_setup"]["data"]["completeness"]["text"] == "partial (4 of 500 problems)"
    assert "test_setup_code" in meta["mbpp"]["protocol"] and "mbpp_setup" in meta["mbpp"]["protocol"]
    assert "lower case scores 0" in meta["gsm8k"]["protocol"]
    assert meta["gsm8k"]["table_note"]["metric"] == "exact_match,flexible-extract"


def test_race_middle_is_its_own_lm_eval_task(tmp_path: Path) -> None:
    from harness.evaluate.protocols import SuiteContext
    from suites.knowledge.benchmarks import BENCHMARKS
    from suites.knowledge.derive import BenchmarkSource, _benchmark_files
    from suites.knowledge.suite import KnowledgeOptions, KnowledgeSuite

    hub = _benchmark_files(BenchmarkSource(BENCHMARKS["race_middle"]))["race_middle.yaml"]
    assert hub["dataset_name"] == "middle" and hub["include"].endswith("race/race.yaml")
    convert("race_middle", _jsonl(tmp_path / "middle.jsonl", _race_rows("middle", 4)), tmp_path / "data")
    plan = KnowledgeSuite().prepare(KnowledgeOptions(benchmarks=["race_middle"], data_dir=tmp_path / "data"),
                                    SuiteContext())
    assert plan.tasks == {"race_middle": "race_middle"}
    assert plan.data_meta["race_middle"]["completeness"]["text"] == "partial (4 of 1436 questions)"
