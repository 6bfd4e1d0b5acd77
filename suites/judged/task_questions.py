"""Toy judged benches drawn from the task families of `builtin:toy-instructions`, each turn with a reference.

`questions: builtin:toy-task-mt-bench` (two turns) / `builtin:toy-task-vicuna-bench` (one turn). Every
question is in a reference-guided category (math or reasoning), so `judge_serve: builtin:reference-judge`
can grade every turn; SFT on toy-instructions teaches the same formats, so it can move the score. Drawn
with seeds the training data does not use, so no question is a training example.
"""

from __future__ import annotations

import random
from typing import Any

from harness.builtin.toy_instructions import _FAMILIES

# Families whose answers a reference can check (describe_place is free text).
_CATEGORY = {"arithmetic": "math", "word_problem": "math", "sorting": "reasoning", "compare": "reasoning",
             "table_lookup": "reasoning", "string_edit": "reasoning"}
_SEED = 7919  # not a seed builtin:toy-instructions is generated with


def _turn(family: str, rng: random.Random) -> tuple[str, str]:
    record = _FAMILIES[family](rng)
    text = record["instruction"] + (f"\n\n{record['input']}" if record["input"] else "")
    return text, record["output"]


def task_bench(n_questions: int, n_turns: int, marker: str, seed: int = _SEED) -> tuple[list[dict[str, Any]],
                                                                                       dict[int, list[str]]]:
    """(questions, references) in FastChat's shapes; question i's first turn starts with `<<{marker}i>>`."""
    rng = random.Random(seed)
    families = list(_CATEGORY)
    questions, references = [], {}
    for qid in range(1, n_questions + 1):
        family = families[(qid - 1) % len(families)]
        pairs = [_turn(family, rng) for _ in range(n_turns)]
        turns, refs = [text for text, _ in pairs], [answer for _, answer in pairs]
        first = f"<<{marker}{qid}>> {turns[0]}"
        questions.append({"question_id": qid, "category": _CATEGORY[family], "turns": [first, *turns[1:]]})
        references[qid] = list(refs)
    return questions, references


TASK_MT_BENCH = task_bench(6, 2, "t")
TASK_VICUNA_BENCH = task_bench(6, 1, "u", seed=_SEED + 1)
