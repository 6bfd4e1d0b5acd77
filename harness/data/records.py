"""The normalised training records every method and loader agrees on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class InstructionRecord:
    """One instruction-response pair (the first user->assistant turn of a conversation)."""

    instruction: str
    input: str
    output: str


@dataclass(frozen=True)
class TextRecord:
    """Plain text trained with an LM loss on every token (pre-training text for Replay)."""

    text: str


TrainRecord = InstructionRecord | TextRecord


def fingerprint(records: Iterable[TrainRecord]) -> str:
    """sha256 over the normalised records, in order: the data's identity in checkpoint manifests."""
    digest = hashlib.sha256()
    for record in records:
        payload = {"type": type(record).__name__, **asdict(record)}
        digest.update(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()
