"""Data-order merging (Ju et al., EMNLP 2024): K runs on all the data in K different orders,
combined by parameter-selection merging (each weight taken from one run; resampling of entries
a run left at the base value by default)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field

from harness.checkpoint import Checkpoint
from harness.merge.spec import MergeSpec
from harness.method import CombineContext, MethodOptions, PlanContext, RunSpec


class DataOrderOptions(MethodOptions):
    k: int = Field(4, ge=2, description="Number of data orders (runs).")
    merge: MergeSpec = Field(default_factory=lambda: MergeSpec(name="parameter_selection", params={"resample": True}),
                             description="Merge operator (default: parameter selection with resampling).")
    same_init: bool = Field(True, description="Runs share one LoRA initialisation; only the order differs.")


class DataOrderMerge:
    version: ClassVar[str] = "1"  # bump when its behaviour changes: part of the keys of its jobs
    light_steps: ClassVar[frozenset[str]] = frozenset({"plan"})  # no model loaded: run by the scheduler
    description: ClassVar[str] = "K runs on all data in K orders, merged by parameter selection (Ju et al. 2024)."
    Options: ClassVar[type[MethodOptions]] = DataOrderOptions

    def __init__(self, options: DataOrderOptions) -> None:
        self.options = options

    def planned_runs(self) -> int:
        return self.options.k

    def plan(self, data: Sequence[Any], ctx: PlanContext) -> list[RunSpec]:
        return [RunSpec(name=f"order-{i}", seed=ctx.seed * 1000 + i,
                        init_seed=ctx.seed if self.options.same_init else None) for i in range(self.options.k)]

    def combine(self, checkpoints: Sequence[Checkpoint], ctx: CombineContext) -> Checkpoint:
        from harness.merge.checkpoints import merge_checkpoints

        return merge_checkpoints(checkpoints, self.options.merge.name, ctx.out_dir, params=self.options.merge.params,
                                 seed=ctx.seed, lora_rank=self.options.merge.lora_rank, provenance={"method": "data_order_merge",
                                                            "options": self.options.model_dump(mode="json")})
