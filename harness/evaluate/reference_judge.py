"""`judge_serve: builtin:reference-judge`: a reference-match grader served like any judge, for offline runs.

It is not a language model and is never presented as one. It reads the judge prompt it is sent (atax's
or FastChat's reference-guided prompts), takes the assistant's answer and the reference answer to the
turn being graded, and rates their token overlap (F1 over lower-cased words, numbers and punctuation)
on the 1-10 scale: `Rating: [[1 + 9 * F1]]`. A prompt without a reference answer gets a reply with no
rating, which the judged suites count as missing. The quick start uses it so that instruction-following
scores exist without a download; they measure closeness to the reference, not helpfulness.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NAME = "builtin:reference-judge"

_TOKEN = re.compile(r"[a-z]+|\d+|[^\sa-z\d]", re.IGNORECASE)
# (reference, answer) sections of single-turn prompts: atax's own, then FastChat's wording.
_SINGLE = [
    (r"\[Reference answer begins\]\n(.*?)\n\[Reference answer ends\]",
     r"\[Assistant's response begins\]\n(.*?)\n\[Assistant's response ends\]"),
    (r"\[The Start of Reference Answer\]\n(.*?)\n\[The End of Reference Answer\]",
     r"\[The Start of Assistant's Answer\]\n(.*?)\n\[The End of Assistant's Answer\]"),
]
# Multi-turn prompts: the last reference and the assistant's last turn are the ones graded.
_MULTI_REFERENCE = r"### Reference answer:\n(.*?)\n\n(?=### User:|<\|Reference answers end\|>|<\|The End of Reference)"
_MULTI_ANSWER = r"### Assistant:\n((?:(?!### Assistant:).)*?)\n\n<\|(?:Conversation between the user and the assistant ends|The End of Assistant)"


def token_f1(answer: str, reference: str) -> float:
    """F1 of the answer's tokens against the reference's (multiset overlap); 0 when either is empty."""
    got, want = Counter(t.lower() for t in _TOKEN.findall(answer)), Counter(t.lower() for t in _TOKEN.findall(reference))
    common = sum((got & want).values())
    if not common:
        return 0.0
    precision, recall = common / sum(got.values()), common / sum(want.values())
    return 2 * precision * recall / (precision + recall)


def rating(f1: float) -> int:
    """The 1-10 rating of an overlap: 1 for none, 10 for an exact token match."""
    return 1 + round(9 * f1)


def sections(prompt: str) -> tuple[str, str] | None:
    """(answer, reference) of the turn a judge prompt grades, or None when it carries no reference."""
    for ref_pattern, answer_pattern in _SINGLE:
        ref, answer = re.search(ref_pattern, prompt, re.S), re.search(answer_pattern, prompt, re.S)
        if ref and answer:
            return answer.group(1), ref.group(1)
    refs = re.findall(_MULTI_REFERENCE, prompt, re.S)
    answers = re.findall(_MULTI_ANSWER, prompt, re.S)
    if refs and answers:
        return answers[-1], refs[-1]
    return None


def judge_reply(prompt: str) -> str:
    """The judge's reply to one prompt: a justification naming the measure, then the rating."""
    found = sections(prompt)
    if found is None:
        return "This reference-match judge needs a reference answer; the prompt has none, so no rating."
    f1 = token_f1(*found)
    return f"Reference-match judge: token F1 with the reference answer is {f1:.2f}. Rating: [[{rating(f1)}]]"


@dataclass
class ReferenceJudge:
    """What `ChatServer` needs of a model (name, max_tokens_limit, complete), answering by `judge_reply`."""

    name: str
    max_tokens_limit: int

    def complete(self, messages: list[dict[str, str]], temperature: float, max_tokens: int,
                 client_gone: Callable[[], bool] = lambda: False) -> dict[str, Any] | None:
        prompt = "\n\n".join(m["content"] for m in messages)
        text = judge_reply(prompt)
        n_prompt, n_reply = len(_TOKEN.findall(prompt)), len(_TOKEN.findall(text))
        # Never truncated: the rating is the reply; max_tokens only bounds language models.
        return {"text": text, "prompt_tokens": n_prompt, "completion_tokens": n_reply, "finish_reason": "stop"}
