"""The prompts Deita's scorers read: one scores an instruction's complexity, one a response's quality.

They must match, character for character, the format the released scorers
(hkust-nlp/deita-complexity-scorer, hkust-nlp/deita-quality-scorer) were trained with: the
plain-text templates of Deita's own `Llama_Scorer` (deita/selection/scorer/llama_scorer.py),
fed to the tokenizer as is (the tokenizer adds BOS) with no chat wrapper. A scorer answers
with one digit "1".."6" right after the closing marker, so its first generated position
carries the score distribution. Spacing (two spaces before the newline, the space after
the colon) is part of the trained format: do not tidy it.
"""

from __future__ import annotations

from typing import Literal

from harness.data.records import InstructionRecord
from harness.data.templates import user_message

ScoreKind = Literal["complexity", "quality"]

_SYSTEM = "You are a helpful assistant. "
COMPLEXITY_TEMPLATE = (_SYSTEM + "Please identify the complexity score of the following user query. \n"
                       "##Query: {instruction}  \n##Complexity: ")
QUALITY_TEMPLATE = (_SYSTEM + "Please identify the quality score of the Response corresponding to the "
                    "Question. \n #Question#:\n{instruction}\n#Response#:\n{output} \n##Quality: ")

# What follows the sample's text in each prompt. Truncation cuts before it, so a long sample
# still ends with the marker the scorer answers after.
CLOSING_MARKERS: dict[ScoreKind, str] = {"complexity": "  \n##Complexity: ", "quality": " \n##Quality: "}


def complexity_prompt(record: InstructionRecord) -> str:
    """The complexity prompt for a record's user turn (instruction and input, as the model sees them)."""
    return COMPLEXITY_TEMPLATE.format(instruction=user_message(record))


def quality_prompt(record: InstructionRecord) -> str:
    """The quality prompt for a record's response to its user turn."""
    return QUALITY_TEMPLATE.format(instruction=user_message(record), output=record.output)


def render(kind: ScoreKind, record: InstructionRecord) -> str:
    return complexity_prompt(record) if kind == "complexity" else quality_prompt(record)
