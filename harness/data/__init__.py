"""Instruction data: loading from hub / file / built-in, row formats, templates, tokenisation."""

from harness.data.loading import InstructionData, load_instruction_data, select_subset
from harness.data.records import InstructionRecord, TextRecord, TrainRecord, fingerprint
from harness.data.templates import (
    IGNORE_INDEX,
    TokenizedData,
    TokenizedExample,
    render_prompt,
    tokenize_instruction,
    tokenize_records,
    tokenize_text,
)

__all__ = [
    "IGNORE_INDEX", "InstructionData", "InstructionRecord", "TextRecord", "TokenizedData",
    "TokenizedExample", "TrainRecord", "fingerprint", "load_instruction_data", "render_prompt",
    "select_subset", "tokenize_instruction", "tokenize_records", "tokenize_text",
]
