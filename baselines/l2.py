"""L2 regularisation of the weight delta: loss + λ·Σ‖ΔW‖², ΔW = s·B·A per adapted module.

‖s·B·A‖²_F = s²·Σ((BᵀB) ⊙ (AAᵀ)) needs only r×r matrices, so the penalty never materialises a
full weight delta. Default λ = 0.01: a 7B LoRA whose summed ‖ΔW‖² grows to ~100 then pays a
penalty of the order of its loss; the DTM paper does not report its value, so tune it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ConfigDict, Field

from harness.checkpoint import Checkpoint
from harness.method import CombineContext, MethodOptions, PlanContext, PluginRef, RunSpec, only_run
from harness.train.hooks import TrainContext
from harness.train.lora import lora_modules

if TYPE_CHECKING:  # listing methods must not import torch
    import torch

DEFAULT_LAMBDA = 0.01


class PenaltyOptions(MethodOptions):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    lambda_: float = Field(DEFAULT_LAMBDA, alias="lambda", ge=0, description="Penalty weight λ.")


def delta_norm_squared(model: Any) -> torch.Tensor:
    """Σ over adapted modules of ‖s·B·A‖²_F, computed from r×r Gram matrices."""
    total = None
    for _, a, b, scale in lora_modules(model):
        term = scale ** 2 * ((b.T @ b) * (a @ a.T)).sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("the model has no active LoRA layer to regularise")
    return total


class DeltaL2Penalty:
    """Regulariser hook `delta_l2`."""

    description: ClassVar[str] = "λ·Σ‖ΔW‖² over the LoRA-adapted modules."
    Options: ClassVar[type[MethodOptions]] = PenaltyOptions

    def __init__(self, options: PenaltyOptions, ctx: TrainContext) -> None:
        self.lam = options.lambda_

    def penalty(self, model: Any, step: int) -> torch.Tensor:
        return self.lam * delta_norm_squared(model)


class L2:
    version: ClassVar[str] = "1"  # bump when its behaviour changes: part of the keys of its jobs
    light_steps: ClassVar[frozenset[str]] = frozenset({"plan", "combine"})  # no model loaded: run by the scheduler
    description: ClassVar[str] = "SFT with an L2 penalty λ·‖ΔW‖² on the weight delta (default λ = 0.01)."
    Options: ClassVar[type[MethodOptions]] = PenaltyOptions

    def __init__(self, options: PenaltyOptions) -> None:
        self.options = options

    def plan(self, data: Sequence[Any], ctx: PlanContext) -> list[RunSpec]:
        return [RunSpec(name="main", seed=ctx.seed,
                        regularizer=PluginRef("delta_l2", {"lambda": self.options.lambda_}))]

    def combine(self, checkpoints: Sequence[Checkpoint], ctx: CombineContext) -> Checkpoint:
        return only_run(checkpoints, "l2")
