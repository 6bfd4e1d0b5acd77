"""LoRAMoE (Dou et al. 2023) as a method: one run on all the data with LoRA-MoE layers, identity combine.

The experts go on `training.lora.target_modules` (by default the FFN projections, as in the
paper); the experiment's LoRA r / alpha / dropout do not apply, this method's options do.
Checkpoints are of kind `loramoe`; evaluate them with the `hf` backend (vLLM cannot serve them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from harness.checkpoint import Checkpoint
from harness.errors import UserError
from harness.method import CombineContext, MethodOptions, PlanContext, PluginRef, RunSpec, only_run

TaskLabel = Literal["knowledge", "task"]


class LoraMoEOptions(MethodOptions):
    # Defaults: rank 4 per expert (paper and released script), 6 experts (the paper's setting;
    # the released script run_loramoe.sh uses 8), alpha 32 and dropout 0.05 (released script).
    n_experts: int = Field(6, ge=1, description="LoRA experts per adapted layer.")
    r: int = Field(4, ge=1, description="Rank of each expert (small: N experts of rank r cost one LoRA of rank N*r).")
    alpha: float = Field(32, gt=0, description="Each expert's update is scaled by alpha / r.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the experts' input.")
    balance_weight: float = Field(0.0, ge=0, description="beta, weight of the localized balancing constraint "
                                                         "(0: off, as the authors' released script).")
    balance_delta: float = Field(0.0, ge=0, le=1, description="delta: I = 1 + delta for the experts of a "
                                                              "sample's own group, 1 - delta for the others.")
    knowledge_fraction: float = Field(0.5, gt=0, lt=1, description="Share of experts in the world-knowledge "
                                                                   "group; the rest serve downstream tasks.")
    task_label_map: dict[str, TaskLabel] = Field(
        default_factory=dict, description="Data source -> knowledge or task: the task type of its samples "
                                          "(a key matches the source or its trailing path, e.g. its file name; "
                                          "empty: no labels).")

    @model_validator(mode="after")
    def _groups_need_two_experts(self) -> LoraMoEOptions:
        if self.task_label_map and self.balance_weight > 0 and self.n_experts < 2:
            raise ValueError("task_label_map: the two expert groups need n_experts >= 2")
        return self


def label_for_source(source: str, label_map: dict[str, str]) -> str | None:
    """The label of a data source: a key equal to it, or to its trailing path (a file name, data/x.json)."""
    if not label_map:
        return None
    source = source.rstrip("/")
    for key, label in label_map.items():
        key = key.rstrip("/").removeprefix("./")
        if source == key or source.endswith("/" + key):
            return label
    raise UserError(f"loramoe option task_label_map: the data source '{source}' is not in it "
                    f"(keys: {', '.join(label_map)}); add it, or leave the map empty for no labels")


class LoraMoE:
    version: ClassVar[str] = "1"  # bump when its behaviour changes: part of the keys of its jobs
    light_steps: ClassVar[frozenset[str]] = frozenset({"plan", "combine"})  # no model loaded: run by the scheduler
    description: ClassVar[str] = ("LoRA-MoE (Dou et al. 2023): N LoRA experts with a per-token softmax router on "
                                  "the FFN projections, optional localized balancing loss; evaluate with hf.")
    Options: ClassVar[type[MethodOptions]] = LoraMoEOptions

    def __init__(self, options: LoraMoEOptions) -> None:
        self.options = options

    def plan(self, data: Sequence[Any], ctx: PlanContext) -> list[RunSpec]:
        o = self.options
        adapter = PluginRef("loramoe", {"n_experts": o.n_experts, "r": o.r, "alpha": o.alpha, "dropout": o.dropout})
        balance = None
        if o.balance_weight > 0:
            balance = PluginRef("loramoe_balance", {
                "weight": o.balance_weight, "delta": o.balance_delta, "knowledge_fraction": o.knowledge_fraction,
                "label": label_for_source(ctx.data_source, dict(o.task_label_map))})
        return [RunSpec(name="main", seed=ctx.seed, adapter=adapter, auxiliary_loss=balance)]

    def combine(self, checkpoints: Sequence[Checkpoint], ctx: CombineContext) -> Checkpoint:
        return only_run(checkpoints, "loramoe")
