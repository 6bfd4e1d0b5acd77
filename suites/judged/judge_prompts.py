"""Judge prompts for single-answer grading on a 1-10 scale with the rating written as `[[rating]]`.

atax's own wording is below, in FastChat's format and under FastChat's names, with the same fields;
to reproduce official MT-bench numbers, pass FastChat's `judge_prompts.jsonl` (`judge_prompts`
option) and its prompts replace these by name. Categories whose answers can be checked (math,
reasoning, coding) are graded against a reference answer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.jsonl import jsonl_objects

# As FastChat's NEED_REF_CATS.
NEED_REF_CATEGORIES = frozenset({"math", "reasoning", "coding", "arena-hard-200"})
OUTPUT_FORMAT = "[[rating]]"


@dataclass(frozen=True)
class JudgePrompt:
    name: str
    system_prompt: str
    prompt_template: str

    def messages(self, **fields: str) -> list[dict[str, str]]:
        """The chat-completions messages: the system prompt, then the filled template as the user turn."""
        return [{"role": "system", "content": self.system_prompt},
                {"role": "user", "content": self.prompt_template.format(**fields)}]


_SCALE = ('Finish with your score from 1 (worst) to 10 (best), written exactly as "[[rating]]", '
          'for instance "Rating: [[6]]".')
_SYSTEM = "You grade answers written by AI assistants. You are fair, careful and consistent."
_CONVERSATION = ("<|Conversation between the user and the assistant begins|>\n\n### User:\n{question_1}\n\n"
                 "### Assistant:\n{answer_1}\n\n### User:\n{question_2}\n\n### Assistant:\n{answer_2}\n\n"
                 "<|Conversation between the user and the assistant ends|>")

ATAX_PROMPTS: dict[str, JudgePrompt] = {p.name: p for p in (
    JudgePrompt("single-v1", _SYSTEM, (
        "[Task]\nGrade the assistant's response to the user's question below. Consider how helpful, relevant, "
        "accurate and detailed it is, how well it does what was asked, and, where the question invites it, "
        "its depth and creativity. Write a brief, objective justification first. " + _SCALE + "\n\n"
        "[Question]\n{question}\n\n[Assistant's response begins]\n{answer}\n[Assistant's response ends]")),
    JudgePrompt("single-math-v1", _SYSTEM, (
        "[Task]\nGrade the assistant's response to the user's question below for correctness and helpfulness. "
        "A reference answer is given: compare the response with it, point out every mistake in the response, "
        "and do not reward length or style over correctness. Write a brief, objective justification first. "
        + _SCALE + "\n\n[Question]\n{question}\n\n[Reference answer begins]\n{ref_answer_1}\n"
        "[Reference answer ends]\n\n[Assistant's response begins]\n{answer}\n[Assistant's response ends]")),
    JudgePrompt("single-v1-multi-turn", (
        "Grade the assistant in the conversation below, judging only its reply to the user's second message. "
        "Consider how helpful, relevant, accurate and detailed that reply is and how well it does what was "
        "asked. Write a brief, objective justification first. " + _SCALE + "\n\n"), _CONVERSATION),
    JudgePrompt("single-math-v1-multi-turn", (
        "Grade the assistant in the conversation below for correctness and helpfulness, judging only its reply "
        "to the user's second message. Reference answers to both messages are given: compare the reply with "
        "them and point out every mistake. Write a brief, objective justification first. " + _SCALE + "\n\n"),
        "<|Reference answers begin|>\n\n### User:\n{question_1}\n\n### Reference answer:\n{ref_answer_1}\n\n"
        "### User:\n{question_2}\n\n### Reference answer:\n{ref_answer_2}\n\n<|Reference answers end|>\n\n\n"
        + _CONVERSATION),
)}

# The fields each prompt is filled with; a loaded template must not ask for others.
_FIELDS: dict[str, tuple[str, ...]] = {
    "single-v1": ("question", "answer"),
    "single-math-v1": ("question", "answer", "ref_answer_1"),
    "single-v1-multi-turn": ("question_1", "answer_1", "question_2", "answer_2"),
    "single-math-v1-multi-turn": ("question_1", "answer_1", "question_2", "answer_2", "ref_answer_1",
                                  "ref_answer_2"),
}


def prompt_name(category: str, turn: int, guided_everywhere: bool = False) -> str:
    """FastChat's choice: reference-guided for checkable categories (or every category when asked),
    multi-turn prompt for turn 2."""
    name = "single-math-v1" if needs_reference(category, guided_everywhere) else "single-v1"
    return f"{name}-multi-turn" if turn == 2 else name


def needs_reference(category: str, guided_everywhere: bool = False) -> bool:
    return guided_everywhere or category in NEED_REF_CATEGORIES


def load_judge_prompts(path: Path | None, needed: set[str]) -> tuple[dict[str, JudgePrompt], dict[str, Any]]:
    """atax's prompts, or FastChat's `judge_prompts.jsonl` from `path`; `needed` names must all be there."""
    if path is None:
        return ATAX_PROMPTS, {"source": "atax-v1"}
    if not path.is_file():
        raise UserError(f"judge_prompts: {path} not found; give FastChat's judge_prompts.jsonl")
    prompts: dict[str, JudgePrompt] = {}
    for line_no, row in jsonl_objects(path, "a JSON object (a FastChat judge prompt)"):
        where = f"{path}:{line_no}"
        name = row.get("name")
        if name not in _FIELDS:
            continue  # pairwise prompts and others this suite does not use
        if row.get("type") != "single" or row.get("output_format") != OUTPUT_FORMAT:
            raise UserError(f"{where}: prompt '{name}' must be type \"single\" with output_format "
                            f"\"{OUTPUT_FORMAT}\"")
        system, template = row.get("system_prompt"), row.get("prompt_template")
        if not isinstance(system, str) or not isinstance(template, str):
            raise UserError(f"{where}: prompt '{name}' needs \"system_prompt\" and \"prompt_template\" strings")
        try:
            template.format(**dict.fromkeys(_FIELDS[name], ""))
        except (KeyError, IndexError, ValueError) as exc:
            raise UserError(f"{where}: prompt '{name}' has a template field atax does not fill ({exc}); "
                            f"it may use {', '.join(_FIELDS[name])}") from None
        prompts[name] = JudgePrompt(name, system, template)
    missing = sorted(needed - set(prompts))
    if missing:
        raise UserError(f"judge_prompts: {path} lacks {', '.join(missing)}; give FastChat's judge_prompts.jsonl")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return prompts, {"source": str(path), "sha256": digest}
