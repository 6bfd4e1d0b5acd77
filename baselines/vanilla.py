"""Vanilla SFT: one run on all the instruction data, no regulariser, the checkpoint as is."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from harness.checkpoint import Checkpoint
from harness.method import CombineContext, MethodOptions, PlanContext, RunSpec, only_run


class VanillaOptions(MethodOptions):
    """Vanilla has no options of its own; the experiment's `training` block applies."""


class Vanilla:
    version: ClassVar[str] = "1"  # bump when its behaviour changes: part of the keys of its jobs
    light_steps: ClassVar[frozenset[str]] = frozenset({"plan", "combine"})  # no model loaded: run by the scheduler
    description: ClassVar[str] = "Plain supervised fine-tuning (LoRA) on all instruction data."
    Options: ClassVar[type[MethodOptions]] = VanillaOptions

    def __init__(self, options: MethodOptions) -> None:
        self.options = options

    def plan(self, data: Sequence[Any], ctx: PlanContext) -> list[RunSpec]:
        return [RunSpec(name="main", seed=ctx.seed)]

    def combine(self, checkpoints: Sequence[Checkpoint], ctx: CombineContext) -> Checkpoint:
        return only_run(checkpoints, "vanilla")
