"""Merge operators over task vectors (operators.py), registered as records (operator.py,
builtin_operators.py), LoRA-preserving merges (lora.py), streamed dense merges (dense.py), and
checkpoint-level merging (checkpoints.py)."""

from __future__ import annotations

from harness.merge.operator import MergeOperator, operator


def get(name: str) -> MergeOperator:
    """The registered operator `name`, callable as `op(tensors, base=None, weights=None, **params) -> tensor`."""
    return operator(name)
