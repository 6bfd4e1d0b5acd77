"""Answers recorded elsewhere (FastChat's model_answer files, another machine's generations), keyed by
question id and turn, checked against the questions: a question without its answer, or an answer to
a question the question file does not have, is a one-line error, so no answer is ever judged
against the wrong question. Texts are kept byte for byte (FastChat judges them unstripped).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from harness.errors import UserError
from suites.judged.generation import Answer
from suites.judged.questions import Question


def recorded_source(lm: Any) -> tuple[Callable[[str], dict[str, dict[int, str]]], str] | None:
    """(turn_answers, where) when the backend replays an answers file (the `answers` backend), else None."""
    inner = getattr(lm, "inner", lm)  # the runner wraps the backend's LM for progress and caching
    turn_answers = getattr(inner, "turn_answers", None)
    if turn_answers is None:
        return None
    return turn_answers, str(getattr(inner, "path", "the answers file"))


def recorded_answers(questions: Sequence[Question], recorded: dict[str, dict[int, str]], second_turn: bool,
                     known_ids: set[str], where: str) -> dict[int, dict[str, Answer]]:
    """{turn: {question_id: Answer}} for turn 1 (and turn 2 where asked and the question has one)."""
    extra = sorted(set(recorded) - known_ids, key=_id_order)
    if extra:
        raise UserError(f"{where}: answers question_id {_listed(extra)}, which the questions do not have; give "
                        "the question file these answers were written for")
    by_id = {q.question_id: q for q in questions}
    for qid, turns in recorded.items():
        question = by_id.get(qid)  # None: a known question left out by --limit
        beyond = sorted(t for t in turns if question is not None and t > len(question.turns))
        if question is not None and beyond:
            raise UserError(f"{where}: question_id {qid} has an answer for turn {beyond[0]} but the question has "
                            f"{len(question.turns)} turn(s)")
    wanted = [(q, 1) for q in questions] + [(q, 2) for q in questions if second_turn and len(q.turns) > 1]
    lacking = [f"{q.question_id} turn {t}" for q, t in wanted if t not in recorded.get(q.question_id, {})]
    if lacking:
        raise UserError(f"{where}: no answer to question_id {_listed(lacking)} ({len(lacking)} of {len(wanted)} "
                        "answers missing); add them, or judge fewer questions with --limit")
    answers: dict[int, dict[str, Answer]] = {}
    for question, turn in wanted:
        text = recorded[question.question_id][turn]
        answers.setdefault(turn, {})[question.question_id] = Answer(text, "", None, False)
    return answers


def _listed(values: list[str]) -> str:
    return ", ".join(values[:3]) + (f" and {len(values) - 3} more" if len(values) > 3 else "")


def _id_order(qid: str) -> tuple[int, str]:
    return (int(qid), "") if qid.isdigit() else (1 << 62, qid)
