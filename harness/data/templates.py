"""Prompt templates and tokenisation into training examples (labels -100 on the prompt).

The response ends with EOS so the model learns to stop (the DTM authors' released code omits
it, so their models never do). Too-long samples are cut from the response end and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from harness.data.records import InstructionRecord, TextRecord, TrainRecord

IGNORE_INDEX = -100

ALPACA_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)

Template = Literal["alpaca", "chat"]


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]  # aligned with input_ids (not shifted); IGNORE_INDEX where no loss
    truncated: bool = False

    @property
    def n_loss_tokens(self) -> int:
        # The first token is never predicted (nothing precedes it), so it never carries loss.
        return sum(1 for label in self.labels[1:] if label != IGNORE_INDEX)


def user_message(record: InstructionRecord) -> str:
    return f"{record.instruction}\n\n{record.input}" if record.input.strip() else record.instruction


def render_prompt(record: InstructionRecord, template: Template, tokenizer: Any) -> str:
    """The text a model sees before its response — the same at training and at evaluation."""
    if template == "alpaca":
        fmt = ALPACA_PROMPT if record.input.strip() else ALPACA_PROMPT_NO_INPUT
        return fmt.format(instruction=record.instruction, input=record.input)
    return tokenizer.apply_chat_template([{"role": "user", "content": user_message(record)}],
                                         tokenize=False, add_generation_prompt=True)


def encode_prompt(prompt: str, template: Template, tokenizer: Any) -> list[int]:
    # A rendered chat template already carries BOS; the Alpaca text gets the tokenizer's own.
    return list(tokenizer(prompt, add_special_tokens=(template == "alpaca"))["input_ids"])


def tokenize_instruction(record: InstructionRecord, tokenizer: Any, template: Template, max_len: int,
                         loss_on: Literal["response", "all"] = "response") -> TokenizedExample | None:
    """Prompt + response + EOS, loss on the response (and EOS). None when the prompt alone fills max_len."""
    prompt = render_prompt(record, template, tokenizer)
    prompt_ids = encode_prompt(prompt, template, tokenizer)
    # Tokenise the response in context, so the ids are those the model reads after this prompt;
    # fall back to tokenising it alone if the prompt's ids are not a prefix of the whole.
    full_ids = encode_prompt(prompt + record.output, template, tokenizer)
    if full_ids[: len(prompt_ids)] == prompt_ids:
        response_ids = full_ids[len(prompt_ids):]
    else:
        response_ids = list(tokenizer(record.output, add_special_tokens=False)["input_ids"])
    response_ids = [*response_ids, tokenizer.eos_token_id]
    if len(prompt_ids) >= max_len:
        return None
    truncated = len(prompt_ids) + len(response_ids) > max_len
    response_ids = response_ids[: max_len - len(prompt_ids)]
    prompt_labels = list(prompt_ids) if loss_on == "all" else [IGNORE_INDEX] * len(prompt_ids)
    return TokenizedExample(prompt_ids + response_ids, prompt_labels + response_ids, truncated)


def tokenize_text(record: TextRecord, tokenizer: Any, max_len: int) -> TokenizedExample:
    """Plain text with an LM loss on every token (BOS ... EOS), cut at max_len."""
    ids = [*tokenizer(record.text, add_special_tokens=True)["input_ids"], tokenizer.eos_token_id]
    truncated = len(ids) > max_len
    ids = ids[:max_len]
    return TokenizedExample(ids, list(ids), truncated)


@dataclass(frozen=True)
class TokenizedData:
    examples: list[TokenizedExample]
    n_truncated: int  # cut from the response end
    n_prompt_too_long: int  # dropped: the prompt alone fills max_seq_len


def tokenize_records(records: list[TrainRecord], tokenizer: Any, template: Template, max_len: int,
                     loss_on: Literal["response", "all"] = "response") -> TokenizedData:
    examples: list[TokenizedExample] = []
    too_long = 0
    for record in records:
        example = (tokenize_text(record, tokenizer, max_len) if isinstance(record, TextRecord)
                   else tokenize_instruction(record, tokenizer, template, max_len, loss_on))
        if example is None:
            too_long += 1
        else:
            examples.append(example)
    return TokenizedData(examples, sum(e.truncated for e in examples), too_long)
