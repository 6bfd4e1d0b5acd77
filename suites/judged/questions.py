"""Questions and reference answers in FastChat's `llm_judge` formats, from a local path or the hub.

Questions: JSONL `{"question_id", "category", "turns": [...], "reference": [...]?}` (FastChat's
`data/<bench>/question.jsonl`), or a hub dataset with those columns. Reference answers: FastChat's
model-answer JSONL `{"question_id", "choices": [{"turns": [...]}]}` (`reference_answer/gpt-4.jsonl`).
A directory in FastChat's layout may be given instead of the question file; its reference file is
then found beside it. No question text ships with atax.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.jsonl import jsonl_objects
from harness.sources import classify

QUESTION_FILE = "question.jsonl"
REFERENCE_FILE = Path("reference_answer") / "gpt-4.jsonl"


@dataclass(frozen=True)
class Question:
    question_id: str  # FastChat's ids are integers; kept as text so item ids compare across sources
    category: str
    turns: tuple[str, ...]
    reference: tuple[str, ...] = ()  # reference answer per turn, where the question has one

    @property
    def item_hash(self) -> str:
        """Identity of the question's content, so two runs can be shown to have judged the same item."""
        payload = {"question_id": self.question_id, "category": self.category, "turns": list(self.turns),
                   "reference": list(self.reference)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class QuestionSet:
    questions: list[Question]
    meta: dict[str, Any]
    local_dir: Path | None  # where a FastChat-layout reference file may sit


def load_questions(ref: str, base_dir: Path | None = None, what: str = "questions") -> QuestionSet:
    """Questions from a local file or FastChat directory, or from a hub dataset id."""
    from suites.judged.toy_questions import TOY_BENCHES, toy_questions_dir

    if ref in TOY_BENCHES:
        ref = str(toy_questions_dir(ref))
    source = classify(ref, base_dir or Path.cwd())
    if source.kind == "local":
        assert source.path is not None
        path = source.path / QUESTION_FILE if source.path.is_dir() else source.path
        if not path.is_file():
            raise UserError(f"{what}: {path} not found; give FastChat's question.jsonl (or its directory) "
                            "or a hub dataset id")
        rows = list(jsonl_objects(path))
        where = str(path)
        local_dir = path.parent
    elif source.kind == "hub":
        rows, where, local_dir = _hub_rows(ref, what), ref, None
    else:
        raise UserError(f"{what}: '{ref}' is a built-in model name, not a question source")
    questions = [_question(row, f"{where}:{n}") for n, row in rows]
    if not questions:
        raise UserError(f"{what}: {where} holds no questions")
    seen: set[str] = set()
    for question in questions:
        if question.question_id in seen:
            raise UserError(f"{what}: {where} has question_id {question.question_id} twice; ids must be unique")
        seen.add(question.question_id)
    digest = hashlib.sha256("".join(q.item_hash for q in questions).encode()).hexdigest()
    return QuestionSet(questions, {"source": where, "n": len(questions), "sha256": digest}, local_dir)


def load_reference_answers(path: Path) -> dict[str, tuple[str, ...]]:
    """question_id -> reference answer per turn, from FastChat's reference-answer JSONL."""
    if not path.is_file():
        raise UserError(f"reference_answers: {path} not found; give FastChat's reference_answer/gpt-4.jsonl")
    found: dict[str, tuple[str, ...]] = {}
    for line_no, row in jsonl_objects(path):
        where = f"{path}:{line_no}"
        choices = row.get("choices")
        turns = choices[0].get("turns") if isinstance(choices, list) and choices and isinstance(choices[0], dict) \
            else None
        if "question_id" not in row or not _is_text_list(turns):
            raise UserError(f"{where}: expected FastChat's answer format {{\"question_id\", \"choices\": "
                            "[{\"turns\": [...]}]}")
        found[str(row["question_id"])] = tuple(turns)
    return found


def with_references(questions: Iterable[Question], answers: dict[str, tuple[str, ...]] | None) -> list[Question]:
    """Reference answers from the file where it has one, else the question's own `reference`."""
    return [replace(q, reference=answers[q.question_id]) if answers and q.question_id in answers else q
            for q in questions]


def default_reference_file(questions: QuestionSet) -> Path | None:
    """FastChat's layout keeps `reference_answer/gpt-4.jsonl` beside `question.jsonl`."""
    if questions.local_dir is None:
        return None
    candidate = questions.local_dir / REFERENCE_FILE
    return candidate if candidate.is_file() else None


def _question(row: dict[str, Any], where: str) -> Question:
    qid, category, turns = row.get("question_id"), row.get("category"), row.get("turns")
    if isinstance(qid, bool) or not isinstance(qid, (int, str)) or str(qid).strip() == "":
        raise UserError(f"{where}: needs \"question_id\" (integer or string)")
    if not isinstance(category, str) or not category.strip():
        raise UserError(f"{where}: needs \"category\" (string)")
    if not _is_text_list(turns) or not turns:
        raise UserError(f"{where}: needs \"turns\" (a non-empty list of strings)")
    reference = row.get("reference") or []
    if not _is_text_list(reference):
        raise UserError(f"{where}: \"reference\" must be a list of strings")
    return Question(str(qid), category, tuple(turns), tuple(reference))


def _is_text_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _hub_rows(repo: str, what: str) -> list[tuple[int, dict[str, Any]]]:
    try:
        from datasets import load_dataset

        loaded = load_dataset(repo)
    except Exception as exc:  # offline, unknown repo, wrong format: datasets raises many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"{what}: cannot load hub dataset '{repo}' ({type(exc).__name__}: {first}); offline, "
                        "give a local copy of FastChat's question.jsonl") from None
    split = next((s for s in ("train", "test") if s in loaded), None) or next(iter(loaded))
    return [(n, dict(row)) for n, row in enumerate(loaded[split], 1)]
