"""A merge operator as data: what it writes, its weight rule, what it needs, its version and its
tensor function, in one record registered under `atax.merges`. Every "which operator is this?"
question (the CLI, a method's merge options, the checkpoint merger) is answered by the record.

Importing this module does not import torch: the tensor function may be a lazy "module:attr".
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from harness import registry
from harness.errors import UserError

Output = Literal["lora", "dense", "ensemble"]


@dataclass(frozen=True)
class MergeOperator:
    """One merge operator.

    output: what a merge of LoRA inputs writes without `lora_rank` — "lora" (stays an adapter),
    "dense" (a full model; any operator but `lora_factor_average` and `ensemble` can be re-factorised
    into a LoRA with `lora_rank`), or "ensemble" (the inputs kept, probabilities averaged at eval).
    weights_sum_to_one: the weights are a convex combination (else any non-negative weights).
    tensor: `f(tensors, base=None, weights=None, **params) -> tensor` over one parameter (None when
    the operator is not tensor-wise), or a lazy "module:attr". lora: for output "lora", the function
    `(adapters, weights) -> (config, {name: (A, B)})` that keeps an adapter.
    params: the operator parameters it takes (the CLI's --density, --p, --scale, --resample).
    """

    name: str
    description: str
    output: Output
    weights_sum_to_one: bool
    tensor: Callable[..., Any] | str | None = None
    lora: Callable[..., Any] | str | None = None
    params: tuple[str, ...] = ()
    needs_fisher: bool = False
    uses_seed: bool = False
    needs_magnitude_thresholds: bool = False  # a chunked caller passes whole-tensor thresholds (TIES)
    lora_inputs_only: bool = False  # refuses dense inputs (works on the LoRA factors)
    version: str = "1"  # part of the keys of the merges it makes: bump when its results change

    @property
    def refactorable(self) -> bool:
        """Whether `lora_rank` can turn its merged deltas into one LoRA."""
        return self.output != "ensemble" and not self.lora_inputs_only

    def tensor_function(self) -> Callable[..., Any]:
        if self.tensor is None:
            raise UserError(f"merge operator '{self.name}' does not merge tensors")
        return _resolve(self.tensor)

    def lora_function(self) -> Callable[..., Any]:
        if self.lora is None:
            raise UserError(f"merge operator '{self.name}' does not keep a LoRA adapter")
        return _resolve(self.lora)

    def __call__(self, tensors: Sequence[Any], **kwargs: Any) -> Any:
        return self.tensor_function()(tensors, **kwargs)


def _resolve(target: Callable[..., Any] | str) -> Callable[..., Any]:
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def operator(name: str) -> MergeOperator:
    """The registered operator `name`; unknown names are a one-line error listing the known ones.

    A plug-in that registers a bare tensor function (no record) gets a dense operator with
    unconstrained weights and the function's `version` attribute (default "0").
    """
    found = registry.merges.get(name)
    if isinstance(found, MergeOperator):
        return found
    if callable(found):
        return MergeOperator(name, str(getattr(found, "description", "") or ""), "dense", False, tensor=found,
                             needs_magnitude_thresholds=bool(getattr(found, "needs_magnitude_thresholds", False)),
                             version=str(getattr(found, "version", "0")))
    raise UserError(f"merge operator '{name}' is registered as {type(found).__name__}, not a MergeOperator or "
                    "a function; fix the plug-in that registers it")


def known(name: str) -> bool:
    return name in registry.merges


def names() -> list[str]:
    return registry.merges.names()
