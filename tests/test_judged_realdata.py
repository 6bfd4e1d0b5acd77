"""The judged suites on FastChat's real files (../shared/data/mtbench): real GPT-4 judgments parse as
FastChat scored them (or as missing where FastChat's number was off the scale), FastChat's own judge
prompts are rebuilt byte for byte, and both suites run end to end with `atax serve` as the judge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from judged_fixtures import atax_serve, server_stats

from harness.evaluate.runner import EvalRequest, run_eval
from harness.store import ResultsStore
from harness.store.judgments import count_judgments
from suites.judged.generation import Answer
from suites.judged.judge_prompts import load_judge_prompts
from suites.judged.parsing import parse_rating
from suites.judged.questions import load_questions, load_reference_answers, with_references
from suites.judged.scoring import judge_jobs

pytestmark = pytest.mark.realdata
SINGLE = {"single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn"}


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_real_gpt4_judgments_parse_like_fastchat_or_missing(shared_data: Path) -> None:
    rows = _rows(shared_data / "mtbench/mt_bench/model_judgment/gpt-4_single.granite-7b-lab.jsonl")
    assert len(rows) == 160
    for row in rows:
        # FastChat wrote -1 for no rating; its 0s come from `[0]` in quoted code, not from the judge.
        expected = float(row["score"]) if 1 <= row["score"] <= 10 else None
        assert parse_rating(row["judgment"]) == expected, (row["question_id"], row["turn"], row["judgment"][-200:])
        # FastChat's own mode gives FastChat's number, the zeros included; its -1 (no match) is missing.
        assert parse_rating(row["judgment"], "fastchat") == (None if row["score"] == -1 else float(row["score"]))
    parsed = [parse_rating(row["judgment"]) for row in rows]
    assert sum(p is not None for p in parsed) == 38 and sum(p is None for p in parsed) == 122


def test_fastchat_judge_prompts_are_rebuilt_byte_for_byte(shared_data: Path) -> None:
    base = shared_data / "mtbench"
    loaded = load_questions(str(base / "mt_bench"))
    assert loaded.meta["n"] == 80 and len({q.category for q in loaded.questions}) == 8
    questions = with_references(loaded.questions, load_reference_answers(base / "mt_bench/reference_answer/gpt-4.jsonl"))
    prompts, meta = load_judge_prompts(base / "judge_prompts.jsonl", SINGLE)
    assert meta["sha256"].startswith("fd283293406d")
    model_answers = {str(r["question_id"]): r["choices"][0]["turns"]
                     for r in _rows(base / "mt_bench/model_answer/granite-7b-lab.jsonl")}
    answers = {turn: {qid: Answer(turns[turn - 1], "", 0.0, False) for qid, turns in model_answers.items()}
               for turn in (1, 2)}
    jobs = {(j.question.question_id, j.turn): j for j in judge_jobs(questions, answers, prompts, 1, 0.0, 2048)}
    for row in _rows(base / "mt_bench/model_judgment/gpt-4_single.granite-7b-lab.jsonl"):  # the prompts FastChat sent GPT-4 for these very answers
        job = jobs[(str(row["question_id"]), row["turn"])]
        assert job.prompt_name == row["judge"][1]
        assert job.messages[1]["content"] == row["user_prompt"], (row["question_id"], row["turn"])
        assert job.messages[0]["content"] == prompts[job.prompt_name].system_prompt


@pytest.fixture(scope="module")
def served() -> Any:
    # One token per judgment: prompt processing is the work worth testing; the tiny model's noise is not.
    with atax_serve("--max-tokens", "1") as url:
        yield url


@pytest.mark.slow
@pytest.mark.parametrize("suite", ["mt_bench", "vicuna_bench"])
def test_real_questions_end_to_end_with_atax_serve_as_judge(suite: str, shared_data: Path, served: str,
                                                            tmp_path: Path) -> None:
    base = shared_data / "mtbench"
    options: dict[str, Any] = {"questions": str(base / suite / "question.jsonl"), "judge_url": served,
                               "judge_model": "builtin:tiny-llama", "max_new_tokens": 4, "concurrency": 4}
    if suite == "mt_bench":
        options["judge_prompts"] = str(base / "judge_prompts.jsonl")  # official prompts
    before = server_stats(served)["completions"]
    outcome = run_eval(EvalRequest("builtin:tiny-llama", suite, options, "hf", {"batch_size": 32}, tmp_path,
                                   cache=False))
    result = outcome.results[0]
    assert result.benchmark == suite and result.n == 80
    assert server_stats(served)["completions"] - before == 80 == result.meta["judge_requests_sent"]
    reference_items = [i for i in result.items if i.extra["judge_prompt"] == "single-math-v1"]
    assert len(reference_items) == (30 if suite == "mt_bench" else 10)
    assert all(i.target for i in reference_items)  # graded against GPT-4's reference answer
    with ResultsStore.open(tmp_path) as store:
        assert count_judgments(store, "builtin:tiny-llama") == 80
        stored = {s.metric: s.value for s in store.scores(suite=suite)}
        assert stored["n_missing"] == result.values()["n_missing"]
        assert len(store.items(checkpoint="builtin:tiny-llama", benchmark=suite)) == 80
        meta = store.scores(suite=suite, metric="n_missing")[0].run_meta
    assert meta["questions"]["n"] == 80 and meta["reference_answers"].endswith("reference_answer/gpt-4.jsonl")
    assert meta["judge_prompts"]["source"] == (options.get("judge_prompts") or "atax-v1")


def test_reference_guided_all_grades_every_category_against_gpt4s_answers(shared_data: Path) -> None:
    # The study's instruction-following measure: GPT-4's MT-bench answers as the reference of every question,
    # graded by the reference-match judge; FastChat's categories rule stays the default.
    from harness.evaluate.reference_judge import judge_reply
    from suites.judged.judge_prompts import ATAX_PROMPTS

    base = shared_data / "mtbench/mt_bench"
    gpt4 = load_reference_answers(base / "model_answer/gpt-4.jsonl")
    questions = with_references(load_questions(str(base / "question.jsonl")).questions, gpt4)
    answers = {1: {q.question_id: Answer(q.reference[0], "", 0.0, False) for q in questions}}
    by_default = judge_jobs(questions, answers, ATAX_PROMPTS, 1, 0.0, 16)
    assert sum(j.prompt_name == "single-math-v1" for j in by_default) == 30  # math, reasoning, coding
    everywhere = judge_jobs(questions, answers, ATAX_PROMPTS, 1, 0.0, 16, guided_everywhere=True)
    assert {j.prompt_name for j in everywhere} == {"single-math-v1"} and len(everywhere) == 80
    # An answer equal to its reference rates 10 in every category; unguided prompts get no rating.
    assert {judge_reply(j.messages[1]["content"])[-6:] for j in everywhere} == {"[[10]]"}
    assert all("no rating" in judge_reply(j.messages[1]["content"])
               for j in by_default if j.prompt_name == "single-v1")
