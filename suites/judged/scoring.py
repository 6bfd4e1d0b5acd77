"""Judge jobs (one request per question, turn and repeat), and the suite's scores from their ratings.

Scores follow FastChat's `show_result`: the mean over turn-1 ratings with missing ones left out
(never counted as 0; FastChat drops its -1 rows), per-category means of turn 1, and with a second
turn its mean and the mean over all ratings of both turns. Ratings are read from the judgments' text
in the suite's rating mode (`suites.judged.parsing`). A question judged several times
(`judge_repeats`) gets the median of its usable ratings.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from harness.keys import content_key
from harness.store import ItemRecord, Score
from harness.store.judgments import Judgment
from suites.judged.generation import Answer
from suites.judged.judge_prompts import JudgePrompt, prompt_name
from suites.judged.parsing import RatingMode, median, parse_rating
from suites.judged.questions import Question


@dataclass(frozen=True)
class JudgeJob:
    question: Question
    turn: int
    repeat: int
    prompt_name: str
    messages: list[dict[str, str]]
    prompt_hash: str

    @property
    def prompt_json(self) -> str:
        return json.dumps(self.messages, ensure_ascii=False)


def judge_prompt_hash(messages: list[dict[str, str]], temperature: float, max_tokens: int) -> str:
    """What a judgment is cached under (with the judge model): exactly what was asked, and how."""
    return content_key({"messages": messages, "temperature": temperature, "max_tokens": max_tokens}, length=64)


def judge_jobs(questions: Sequence[Question], answers: dict[int, dict[str, Answer]], prompts: dict[str, JudgePrompt],
               repeats: int, temperature: float, max_tokens: int,
               guided_everywhere: bool = False) -> list[JudgeJob]:
    """One job per answered (question, turn) and repeat, with FastChat's prompt fields."""
    jobs = []
    for turn, by_question in sorted(answers.items()):
        for question in questions:
            if question.question_id not in by_question:
                continue
            name = prompt_name(question.category, turn, guided_everywhere)
            ref = question.reference
            if turn == 1:
                fields = {"question": question.turns[0], "answer": by_question[question.question_id].text}
                if ref:
                    fields["ref_answer_1"] = ref[0]
            else:
                fields = {"question_1": question.turns[0], "question_2": question.turns[1],
                          "answer_1": answers[1][question.question_id].text,
                          "answer_2": by_question[question.question_id].text}
                if ref:
                    fields.update(ref_answer_1=ref[0], ref_answer_2=ref[1] if len(ref) > 1 else "")
            messages = prompts[name].messages(**fields)
            digest = judge_prompt_hash(messages, temperature, max_tokens)
            jobs.extend(JudgeJob(question, turn, r, name, messages, digest) for r in range(repeats))
    return jobs


def items_and_scores(questions: Sequence[Question], answers: dict[int, dict[str, Answer]], jobs: Sequence[JudgeJob],
                     judged: dict[tuple[str, int], Judgment],
                     rating: RatingMode | str = "final") -> tuple[list[ItemRecord], list[Score]]:
    """Per-item records (score None = missing) and the suite's metrics, ratings read in mode `rating`."""
    by_item: dict[tuple[str, int], list[JudgeJob]] = defaultdict(list)
    for job in jobs:
        by_item[(job.question.question_id, job.turn)].append(job)
    items, per_turn, per_category = [], defaultdict(list), defaultdict(list)
    n_missing: dict[int, int] = defaultdict(int)
    for turn, by_question in sorted(answers.items()):
        for question in questions:
            answer = by_question.get(question.question_id)
            if answer is None:
                continue
            results = [judged[(job.prompt_hash, job.repeat)] for job in by_item[(question.question_id, turn)]]
            parsed = [parse_rating(r.response, rating) for r in results]
            ratings = [value for value in parsed if value is not None]
            score = median(ratings)
            first = by_item[(question.question_id, turn)][0]
            extra = {"category": question.category, "turn": turn, "question_id": question.question_id,
                     "judge_prompt": first.prompt_name, "prompt_hash": first.prompt_hash,
                     "judgment": results[0].response, "missing": score is None,
                     "temperature": answer.temperature, "answer_reused": answer.reused,
                     "answer_prompt": answer.prompt}
            if len(results) > 1:
                extra.update(judgments=[r.response for r in results], judge_scores=parsed)
            reference = question.reference[turn - 1] if len(question.reference) >= turn else None
            items.append(ItemRecord(f"{question.question_id}/turn{turn}", question.item_hash, answer.text, reference,
                                    score, extra))
            if score is None:
                n_missing[turn] += 1
                continue
            per_turn[turn].append(score)
            if turn == 1:
                per_category[question.category].append(score)
    scores = []
    if per_turn[1]:
        scores.append(_mean("score", per_turn[1]))
    scores.append(Score("n_missing", float(n_missing[1]), n=len(answers[1])))
    scores.extend(_mean(f"score_{category}", values) for category, values in sorted(per_category.items()))
    if 2 in answers:
        scores.append(Score("n_missing_turn2", float(n_missing[2]), n=len(answers[2])))
        if per_turn[2]:
            scores.append(_mean("score_turn2", per_turn[2]))
        if per_turn[1] or per_turn[2]:
            scores.append(_mean("score_both_turns", per_turn[1] + per_turn[2]))
    return items, scores


def _mean(metric: str, values: list[float]) -> Score:
    n = len(values)
    mean = sum(values) / n
    stderr = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else None
    return Score(metric, mean, stderr, n)
