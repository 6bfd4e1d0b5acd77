"""builtin:reference-judge: token-F1 ratings read from atax's reference-guided judge prompts, served over HTTP."""

from __future__ import annotations

import json
import urllib.request

import pytest

from harness.evaluate.local_judge import served_here
from harness.evaluate.reference_judge import judge_reply, rating, sections, token_f1
from suites.judged.judge_prompts import ATAX_PROMPTS, needs_reference
from suites.judged.parsing import parse_rating
from suites.judged.task_questions import TASK_MT_BENCH, TASK_VICUNA_BENCH


def _single(answer: str, reference: str) -> str:
    prompt = ATAX_PROMPTS["single-math-v1"]
    return "\n\n".join(m["content"] for m in prompt.messages(question="What is 2 + 3?", answer=answer,
                                                               ref_answer_1=reference))


def test_token_f1_and_rating_span_the_scale() -> None:
    assert token_f1("2 + 3 = 5.", "2 + 3 = 5.") == 1.0 and rating(1.0) == 10
    assert token_f1("banana", "2 + 3 = 5.") == 0.0 and rating(0.0) == 1
    assert 0 < token_f1("2 + 3 = 6.", "2 + 3 = 5.") < 1


def test_single_turn_prompt_is_graded_against_its_reference() -> None:
    assert sections(_single("2 + 3 = 5.", "2 + 3 = 5.")) == ("2 + 3 = 5.", "2 + 3 = 5.")
    exact, wrong = judge_reply(_single("2 + 3 = 5.", "2 + 3 = 5.")), judge_reply(_single("zzz", "2 + 3 = 5."))
    assert parse_rating(exact) == 10 and parse_rating(wrong) == 1


def test_multi_turn_prompt_grades_the_second_turn() -> None:
    prompt = ATAX_PROMPTS["single-math-v1-multi-turn"]
    text = "\n\n".join(m["content"] for m in prompt.messages(
        question_1="What is 2 + 3?", answer_1="2 + 3 = 5.", question_2="And 4 + 4?", answer_2="4 + 4 = 8.",
        ref_answer_1="2 + 3 = 5.", ref_answer_2="4 + 4 = 8."))
    assert sections(text) == ("4 + 4 = 8.", "4 + 4 = 8.")


def test_prompt_without_reference_gets_no_rating() -> None:
    prompt = ATAX_PROMPTS["single-v1"]
    text = "\n\n".join(m["content"] for m in prompt.messages(question="Say hi.", answer="hi"))
    assert sections(text) is None and "[[" not in judge_reply(text)


@pytest.mark.parametrize("bench", [TASK_MT_BENCH, TASK_VICUNA_BENCH])
def test_task_benches_have_a_reference_for_every_turn(bench) -> None:
    questions, references = bench
    assert questions and all(needs_reference(q["category"]) for q in questions)
    assert all(len(references[q["question_id"]]) == len(q["turns"]) for q in questions)


def test_served_over_http_like_any_judge() -> None:
    with served_here("builtin:reference-judge", "reference-judge", 16) as url:
        body = {"model": "reference-judge", "temperature": 0, "max_tokens": 16,
                "messages": [{"role": "user", "content": _single("2 + 3 = 5.", "2 + 3 = 5.")}]}
        request = urllib.request.Request(f"{url}/chat/completions", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            reply = json.load(response)["choices"][0]["message"]["content"]
    assert "Reference-match judge" in reply and "[[10]]" in reply
