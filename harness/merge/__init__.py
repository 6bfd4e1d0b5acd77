"""Merge operators over task vectors (operators.py), LoRA-preserving merges (lora.py), streamed
dense merges (dense.py), and checkpoint-level merging (checkpoints.py)."""

from __future__ import annotations

from typing import Any

from harness import registry


def get(name: str) -> Any:
    """The registered operator `name`: `op(tensors, base=None, weights=None, **params) -> tensor`."""
    return registry.merges.get(name)
