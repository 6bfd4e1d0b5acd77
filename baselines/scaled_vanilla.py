"""The update-scaled control (WiSE-FT-style, Wortsman et al. 2022): θ_base + α·ΔW_vanilla for each α.

It reuses vanilla's run (same run, same key: nothing is retrained) and scales B, which is exact
for LoRA. A merge of K sub-models also shrinks the update, so a method's knowledge retention
means something only if it beats this curve at equal instruction-following.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field, field_validator

from harness.checkpoint import Checkpoint, find_complete, write_checkpoint
from harness.keys import content_key
from harness.method import CombineContext, MethodOptions, PlanContext, RunSpec


class ScaledOptions(MethodOptions):
    alphas: list[float] = Field([0.25, 0.5, 0.75, 1.0], min_length=1,
                                description="Scales of vanilla's update; one checkpoint per α.")

    @field_validator("alphas")
    @classmethod
    def _non_negative(cls, alphas: list[float]) -> list[float]:
        if any(a < 0 for a in alphas):
            raise ValueError(f"every alpha must be >= 0 (got {alphas})")
        if len(set(alphas)) != len(alphas):
            raise ValueError(f"alphas must be distinct (got {alphas})")
        return alphas


def scale_lora(checkpoint: Checkpoint, alpha: float, out_dir: Any) -> Checkpoint:
    from harness.merge.adapters import read_adapter, write_adapter

    key = content_key({"scaled": checkpoint.run_key, "alpha": alpha})
    existing = find_complete(out_dir, key)
    if existing is not None:
        return existing
    adapter = read_adapter(checkpoint.path)
    modules = {name: (m.a, alpha * m.b) for name, m in adapter.modules.items()}
    manifest = {"kind": "lora", "run_key": key, "base_model": checkpoint.base_model.as_dict(),
                "variant": f"alpha={alpha:g}", "scaled_from": {"path": str(checkpoint.path), "alpha": alpha,
                                                               "run_key": checkpoint.run_key}}
    return write_checkpoint(out_dir, manifest, lambda tmp: write_adapter(tmp, adapter.config, modules))


class ScaledVanilla:
    version: ClassVar[str] = "1"  # bump when its behaviour changes: part of the keys of its jobs
    light_steps: ClassVar[frozenset[str]] = frozenset({"plan"})  # no model loaded: run by the scheduler
    description: ClassVar[str] = "Control: base + α·(vanilla's update) for each α (reuses vanilla's run)."
    Options: ClassVar[type[MethodOptions]] = ScaledOptions

    def __init__(self, options: ScaledOptions) -> None:
        self.options = options

    def planned_variants(self) -> int:
        return len(self.options.alphas)

    def plan(self, data: Sequence[Any], ctx: PlanContext) -> list[RunSpec]:
        return [RunSpec(name="main", seed=ctx.seed)]  # vanilla's exact run: its key, so it is reused

    def combine(self, checkpoints: Sequence[Checkpoint], ctx: CombineContext) -> list[Checkpoint]:
        (vanilla,) = checkpoints
        return [scale_lora(vanilla, alpha, ctx.out_dir / f"alpha-{alpha:g}") for alpha in self.options.alphas]
