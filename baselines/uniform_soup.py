"""Uniform Soup (Wortsman et al., 2022): K runs on all the data with K hyper-parameter settings,
combined by the exact uniform average (a LoRA of rank Σ rᵢ). With `greedy: true` and held-out
data (`training.validation_fraction` > 0) it builds a greedy soup instead: runs sorted by their
validation loss, each added only if the soup's validation loss does not get worse.

Default grid (K = 4): learning rate {3e-4, 1e-4} × data-order seed {0, 1}, one shared LoRA init.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness.checkpoint import Checkpoint
from harness.errors import UserError
from harness.method import CombineContext, MethodOptions, PlanContext, RunSpec


class Setting(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: float | None = Field(None, gt=0, description="Learning rate of this run (None: the experiment's).")
    seed: int = Field(0, description="Data-order seed offset of this run.")
    training: dict[str, Any] = Field(default_factory=dict, description="Other training overrides.")


DEFAULT_GRID = [Setting(lr=3e-4, seed=0), Setting(lr=3e-4, seed=1), Setting(lr=1e-4, seed=0), Setting(lr=1e-4, seed=1)]


class SoupOptions(MethodOptions):
    settings: list[Setting] = Field(default_factory=lambda: list(DEFAULT_GRID),
                                    description="One hyper-parameter setting per ingredient (K = its length).")
    greedy: bool = Field(False, description="Greedy soup on the held-out validation data.")
    ensemble: bool = Field(False, description="Keep the ingredients as a logit ensemble instead of averaging "
                                              "weights (the DTM paper's Table 7; hf backend, K passes per token).")
    same_init: bool = Field(True, description="Ingredients share one LoRA initialisation (a soup needs a "
                                              "shared starting point).")

    @field_validator("settings")
    @classmethod
    def _at_least_two(cls, settings: list[Setting]) -> list[Setting]:
        if len(settings) < 2:
            raise ValueError(f"a soup needs K >= 2 settings (got {len(settings)})")
        return settings


class UniformSoup:
    version: ClassVar[str] = "1"  # bump when its behaviour changes: part of the keys of its jobs
    light_steps: ClassVar[frozenset[str]] = frozenset({"plan"})  # no model loaded: run by the scheduler
    description: ClassVar[str] = "K runs with K hyper-parameter settings on all data, uniformly averaged (exact)."
    Options: ClassVar[type[MethodOptions]] = SoupOptions

    def __init__(self, options: SoupOptions) -> None:
        self.options = options

    def planned_runs(self) -> int:
        return len(self.options.settings)

    def merge_operators(self) -> list[str]:
        """The merge operators `combine` uses (their versions are part of its job's key)."""
        return ["ensemble" if self.options.ensemble else "average"]

    def plan(self, data: Sequence[Any], ctx: PlanContext) -> list[RunSpec]:
        specs = []
        for i, setting in enumerate(self.options.settings):
            overrides = dict(setting.training)
            if setting.lr is not None:
                overrides["optimizer"] = {**overrides.get("optimizer", {}), "lr": setting.lr}
            specs.append(RunSpec(name=f"ingredient-{i}", seed=ctx.seed * 1000 + setting.seed,
                                 init_seed=ctx.seed if self.options.same_init else None,
                                 training_overrides=overrides))
        return specs

    def combine(self, checkpoints: Sequence[Checkpoint], ctx: CombineContext) -> Checkpoint:
        from harness.merge.checkpoints import merge_checkpoints

        provenance = {"method": "uniform_soup", "options": self.options.model_dump(mode="json")}
        if self.options.ensemble:
            return merge_checkpoints(checkpoints, "ensemble", ctx.out_dir, seed=ctx.seed, provenance=provenance)
        if not self.options.greedy:
            return merge_checkpoints(checkpoints, "average", ctx.out_dir, seed=ctx.seed, provenance=provenance)
        if not ctx.validation:
            raise UserError("methods: uniform_soup greedy needs held-out data; set training.validation_fraction > 0")
        return _greedy_soup(checkpoints, ctx, provenance)


def _greedy_soup(checkpoints: Sequence[Checkpoint], ctx: CombineContext, provenance: dict[str, Any]) -> Checkpoint:
    from harness.merge.checkpoints import merge_checkpoints
    from harness.train.evaluation import checkpoint_loss

    def loss(checkpoint: Checkpoint) -> float:
        return checkpoint_loss(checkpoint, ctx.validation, ctx.template, ctx.max_seq_len)

    ranked = sorted(checkpoints, key=loss)
    soup, best = [ranked[0]], loss(ranked[0])
    for candidate in ranked[1:]:
        trial = merge_checkpoints([*soup, candidate], "average", ctx.out_dir.with_name(ctx.out_dir.name + ".trial"))
        trial_loss = loss(trial)
        if trial_loss <= best:
            soup, best = [*soup, candidate], trial_loss
    provenance = {**provenance, "greedy": {"kept": [str(c.path) for c in soup], "validation_loss": best}}
    return merge_checkpoints(soup, "average", ctx.out_dir, seed=ctx.seed, provenance=provenance)
