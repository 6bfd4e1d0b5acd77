"""Answers to the benchmark questions, generated through the backend's lm-eval LM with the prompt
template the checkpoint was trained with, FastChat's per-category temperatures, a token limit and
a fixed seed; stored per item in the results store and reused on the next run.

Turn 1 is rendered by `harness.data.templates.render_prompt`, the function training used. Turn 2
(optional) continues the conversation: the chat template over [user, assistant, user], or for
Alpaca the turn-1 prompt and answer followed by a second `### Instruction:` block (Alpaca has no
multi-turn form; this is the closest to what the model saw).
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.checkpoint import MANIFEST
from harness.data.records import InstructionRecord
from harness.data.templates import render_prompt
from harness.errors import UserError
from harness.keys import content_key
from harness.manifest import parse_manifest
from harness.store import judgments
from suites.judged.questions import Question

if TYPE_CHECKING:
    from lm_eval.api.model import LM

    from harness.evaluate.target import EvalTarget
    from harness.store import ResultsStore

# FastChat's gen_model_answer temperatures; categories not listed sample at 0.7.
CATEGORY_TEMPERATURE: dict[str, float] = {
    "writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0, "reasoning": 0.0,
    "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0,
}
DEFAULT_TEMPERATURE = 0.7
ALPACA_STOP = ("### Instruction:",)  # the model starting a new Alpaca turn has finished its answer
# Answers are generated and stored this many at a time, so a killed run loses at most one chunk.
CHUNK = 32
GENERATION_VERSION = 1  # bump when prompts or post-processing change, so stored answers are not reused


def temperature_for(category: str) -> float:
    return CATEGORY_TEMPERATURE.get(category, DEFAULT_TEMPERATURE)


def training_template(target: EvalTarget, option: str) -> tuple[str, str]:
    """(template, why): the `template` option if set, else the checkpoint's training template, else Alpaca."""
    if option != "auto":
        return option, "option"
    found = _manifest_templates(target.provenance, 0)
    if len(found) > 1:
        raise UserError(f"{target.ref}: its sub-models were trained with different templates "
                        f"({', '.join(sorted(found))}); choose one with --option template=alpaca|chat")
    return (found.pop(), "checkpoint") if found else ("alpaca", "default")


def _manifest_templates(manifest: dict[str, Any], depth: int) -> set[str]:
    info = parse_manifest(manifest, "the checkpoint's manifest")
    if info.training is not None and info.training.template:
        return {info.training.template}
    if depth >= 4:  # merge of scaled of run: deeper is a cycle or a bug
        return set()
    parents = [i.path for i in info.merge.inputs] if info.merge else []
    parents.append(info.scaled_from.path if info.scaled_from else None)
    found: set[str] = set()
    for path in filter(None, parents):
        manifest = Path(path) / MANIFEST
        if manifest.is_file():  # only the manifest is read: the template is all this needs of the input
            try:
                parent = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise UserError(f"{manifest}: not readable JSON; the merge input is damaged, train it again") \
                    from None
            if isinstance(parent, dict):
                found |= _manifest_templates(parent, depth + 1)
    return found


@dataclass(frozen=True)
class Answer:
    text: str
    prompt: str
    temperature: float | None  # None: recorded elsewhere, temperature unknown
    reused: bool


def render_turn(question: Question, turn: int, earlier: Sequence[str], template: str, tokenizer: Any) -> str:
    """The prompt for `turn` (1 or 2) of `question`, `earlier` holding the model's answers to earlier turns."""
    if template == "chat" and (tokenizer is None or not getattr(tokenizer, "chat_template", None)):
        raise UserError("the checkpoint was trained with the chat template, but this backend's tokenizer has none; "
                        "evaluate with --backend hf or vllm, or choose --option template=alpaca")
    first = render_prompt(InstructionRecord(question.turns[0], "", ""), template, tokenizer)  # type: ignore[arg-type]
    if turn == 1:
        return first
    if template == "alpaca":
        return f"{first}{earlier[0]}\n\n### Instruction:\n{question.turns[1]}\n\n### Response:\n"
    messages = [{"role": "user", "content": question.turns[0]}, {"role": "assistant", "content": earlier[0]},
                {"role": "user", "content": question.turns[1]}]
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


def answer_turn(lm: LM, questions: Sequence[Question], turn: int, earlier: dict[str, list[str]], *, suite: str,
                template: str, max_new_tokens: int, seed: int, store: ResultsStore, target: EvalTarget,
                on_chunk: Callable[[int], None] = lambda n: None) -> dict[str, Answer]:
    """Answers to `turn` of every question, from the store where already generated, else from `lm`."""
    tokenizer = getattr(lm, "tokenizer", None) if template == "chat" else None
    until = list(ALPACA_STOP) if template == "alpaca" else []
    planned: dict[str, tuple[str, float, str]] = {}
    for question in questions:
        prompt = render_turn(question, turn, earlier.get(question.question_id, []), template, tokenizer)
        temperature = temperature_for(question.category)
        key = content_key({"v": GENERATION_VERSION, "target": target.content_hash, "question": question.question_id,
                           "turn": turn, "prompt": prompt, "temperature": temperature,
                           "max_new_tokens": max_new_tokens, "until": until, "seed": seed}, length=32)
        planned[question.question_id] = (prompt, temperature, key)
    stored = judgments.stored_generations(store, target.key, suite, [key for _, _, key in planned.values()])
    answers = {qid: Answer(stored[key], prompt, temperature, True)
               for qid, (prompt, temperature, key) in planned.items() if key in stored}
    todo = [qid for qid in planned if qid not in answers]
    # Greedy and sampled requests go in separate calls: seeding applies to the sampled ones as a group.
    todo.sort(key=lambda qid: planned[qid][1])
    for number, start in enumerate(range(0, len(todo), CHUNK)):
        chunk = todo[start:start + CHUNK]
        _seed(seed + number)
        texts = lm.generate_until([_instance(suite, index, planned[qid][0], planned[qid][1], max_new_tokens, until)
                                   for index, qid in enumerate(chunk, start)])
        rows = []
        for qid, text in zip(chunk, texts, strict=True):
            prompt, temperature, key = planned[qid]
            answers[qid] = Answer(str(text).strip(), prompt, temperature, False)
            rows.append(judgments.Generation(target.key, suite, qid, turn, key, answers[qid].text))
        judgments.add_generations(store, rows)
        on_chunk(len(chunk))
    return answers


def _instance(suite: str, index: int, prompt: str, temperature: float, max_new_tokens: int, until: list[str]) -> Any:
    from lm_eval.api.instance import Instance

    gen_kwargs = {"until": until, "max_gen_toks": max_new_tokens, "do_sample": temperature > 0,
                  "temperature": temperature}
    return Instance(request_type="generate_until", doc={}, arguments=(prompt, gen_kwargs), idx=0,
                    metadata=(suite, index, 1))


def _seed(seed: int) -> None:
    """Seed every generator a backend may sample from; torch only if the backend already loaded it."""
    random.seed(seed)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
