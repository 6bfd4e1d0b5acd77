"""Row formats of instruction data, each turned into an InstructionRecord.

- alpaca:       {instruction, input?, output}  (Alpaca, Code Alpaca, Dolly-like)
- messages:     {messages: [{role, content}, ...]}  (TULU v2); the first user->assistant turn,
                a leading system turn skipped, as the DTM paper does
- conversations:{conversations: [{from, value}, ...]}  (ShareGPT / FastChat); first human->gpt turn
- instances:    {instruction, instances: [{input, output}, ...]}  (Self-Instruct); first instance
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from harness.data.records import InstructionRecord


class RowError(ValueError):
    """A row does not fit its format; the message says what is missing."""


def _text(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"'{key}' must be a string, not {type(value).__name__}")
    return value


def from_alpaca(row: Mapping[str, Any]) -> InstructionRecord:
    if "instruction" not in row or "output" not in row:
        raise RowError("an Alpaca row needs 'instruction' and 'output'")
    return InstructionRecord(_text(row, "instruction"), _text(row, "input"), _text(row, "output"))


def _first_turn(turns: Any, role_key: str, text_key: str, user: tuple[str, ...],
                assistant: tuple[str, ...], field: str) -> InstructionRecord:
    if not isinstance(turns, list):
        raise RowError(f"'{field}' must be a list of turns")
    turns = [t for t in turns if isinstance(t, Mapping)]
    while turns and turns[0].get(role_key) == "system":
        turns = turns[1:]
    if len(turns) < 2 or turns[0].get(role_key) not in user or turns[1].get(role_key) not in assistant:
        return InstructionRecord("", "", "")  # no first user->assistant turn: counted as empty
    return InstructionRecord(_text(turns[0], text_key), "", _text(turns[1], text_key))


def from_messages(row: Mapping[str, Any]) -> InstructionRecord:
    return _first_turn(row.get("messages"), "role", "content", ("user",), ("assistant",), "messages")


def from_conversations(row: Mapping[str, Any]) -> InstructionRecord:
    return _first_turn(row.get("conversations"), "from", "value", ("human", "user"), ("gpt", "assistant"),
                       "conversations")


def from_instances(row: Mapping[str, Any]) -> InstructionRecord:
    instances = row.get("instances")
    if not isinstance(instances, list) or not instances or not isinstance(instances[0], Mapping):
        raise RowError("'instances' must be a non-empty list of {input, output}")
    return InstructionRecord(_text(row, "instruction"), _text(instances[0], "input"),
                             _text(instances[0], "output"))


FORMATS: dict[str, Callable[[Mapping[str, Any]], InstructionRecord]] = {
    "alpaca": from_alpaca,
    "messages": from_messages,
    "conversations": from_conversations,
    "instances": from_instances,
}


def detect_format(row: Mapping[str, Any]) -> str | None:
    """The format a row is in, from its keys (None when no format fits)."""
    if "messages" in row:
        return "messages"
    if "conversations" in row:
        return "conversations"
    if "instances" in row and "instruction" in row:
        return "instances"
    if "instruction" in row and "output" in row:
        return "alpaca"
    return None
