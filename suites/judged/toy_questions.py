"""Project-written questions in FastChat's formats, for offline runs of the judged suites:
`questions: builtin:toy-mt-bench` / `builtin:toy-vicuna-bench` (written on first use into the cache).

The texts are ours; each carries a marker (`<<q7>>`) a scripted test judge can key its reply on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.atomic import atomic_dir
from harness.paths import cache_dir
from suites.judged.task_questions import TASK_MT_BENCH, TASK_VICUNA_BENCH

_VERSION = "v1"  # bump when the questions change, so stale caches are not reused


QUESTIONS: list[dict[str, Any]] = [
    {"question_id": 1, "category": "writing", "turns": ["<<q1>> Describe a quiet harbour town at dawn.",
                                                        "Rewrite it as a four-line poem."]},
    {"question_id": 2, "category": "math", "turns": ["<<q2>> What is 17 plus 25?", "Now double that."]},
    {"question_id": 3, "category": "coding", "turns": ["<<q3>> Write a Python function that sums a list.",
                                                       "Make it skip None values."]},
    {"question_id": 4, "category": "stem", "turns": ["<<q4>> Why does ice float on water?",
                                                     "Explain it to a ten-year-old."]},
    {"question_id": 5, "category": "reasoning", "turns": ["<<q5>> Ann is taller than Bo; Bo is taller than Cy. "
                                                          "Who is shortest?", "Who is tallest?"]},
    {"question_id": 6, "category": "roleplay", "turns": ["<<q6>> Pretend to be a ship's cook greeting the crew.",
                                                         "Now complain about the weather."]},
]
# Reference answers in FastChat's model-answer format (math, reasoning, coding need them).
REFERENCES: dict[int, list[str]] = {2: ["42", "84"], 3: ["def total(xs):\n    return sum(xs)",
                                                         "def total(xs):\n    return sum(x for x in xs if x is not None)"],
                                    5: ["Cy", "Ann"]}
VICUNA: list[dict[str, Any]] = [
    {"question_id": 1, "category": "generic", "turns": ["<<v1>> How can I keep a tidy desk?"]},
    {"question_id": 2, "category": "knowledge", "turns": ["<<v2>> What causes ocean tides?"]},
    {"question_id": 3, "category": "math", "turns": ["<<v3>> What is 9 squared?"]},
    {"question_id": 4, "category": "fermi", "turns": ["<<v4>> How many grains of rice fit in a cup?"]},
]
VICUNA_REFERENCES: dict[int, list[str]] = {3: ["81"]}


def write_bench(directory: Path, questions: list[dict[str, Any]], references: dict[int, list[str]]) -> Path:
    """FastChat's layout: `question.jsonl` and `reference_answer/gpt-4.jsonl`; returns the question file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "question.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")
    (directory / "reference_answer").mkdir(exist_ok=True)
    (directory / "reference_answer" / "gpt-4.jsonl").write_text("".join(
        json.dumps({"question_id": qid, "answer_id": f"ref{qid}", "model_id": "gpt-4",
                    "choices": [{"index": 0, "turns": turns}], "tstamp": 0.0}) + "\n"
        for qid, turns in references.items()), encoding="utf-8")
    return path


TOY_BENCHES = {"builtin:toy-mt-bench": (QUESTIONS, REFERENCES), "builtin:toy-vicuna-bench": (VICUNA, VICUNA_REFERENCES),
               # Task-family questions with a reference for every turn (for builtin:reference-judge).
               "builtin:toy-task-mt-bench": TASK_MT_BENCH, "builtin:toy-task-vicuna-bench": TASK_VICUNA_BENCH}


def toy_questions_dir(ref: str) -> Path:
    """The FastChat-layout directory of a toy bench, written on first use."""
    questions, references = TOY_BENCHES[ref]
    final = cache_dir() / "builtin" / f"{ref.split(':', 1)[1]}-{_VERSION}"
    if not final.is_dir():
        staging = final.with_name(final.name + ".build")
        with atomic_dir(staging) as tmp:
            write_bench(tmp, questions, references)
        try:
            staging.rename(final)
        except OSError:  # another process published it first
            pass
    return final
