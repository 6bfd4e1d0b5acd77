"""`layer_averaging`: base + α_b·ΔW_vanilla with one α per contiguous block of layers (HMA-style,
Lin et al. 2024), the α vectors searched on held-out proxies and one checkpoint per selected point.

Validation never comes from a benchmark: held-out instruction records (the experiment's
`training.validation_fraction` split, a declared `validation` source, or, when neither exists, a
seeded sample the planned vanilla run never trains on) and pre-training text (`corpus`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from baselines.ewc import DEFAULT_CORPUS
from baselines.layer_averaging.blocks import alpha_label, plan_blocks, write_block_scaled
from baselines.layer_averaging.holdout import split_held_out
from baselines.layer_averaging.search import select
from harness.checkpoint import Checkpoint
from harness.config import DataConfig
from harness.errors import UserError
from harness.method import CombineContext, MethodOptions, PlanContext, PluginRef, RunSpec

HOLDOUT_TRANSFORM = "layer_averaging_holdout"
MAX_BLOCKS = 256
MAX_CANDIDATES = 4096  # α vectors scored: each is a pass over both proxies


class LayerAveragingOptions(MethodOptions):
    blocks: int = Field(3, ge=1, le=MAX_BLOCKS, description="Contiguous blocks of adapted layers, one α each (lower/middle/upper); "
                                             "at most one block per layer.")
    alpha_grid: list[float] = Field([0.0, 0.25, 0.5, 0.75, 1.0], min_length=2,
                                    description="Values each block's α takes in the search, in [0, 1].")
    budget: int | None = Field(64, ge=1, le=MAX_CANDIDATES, description="Most α vectors evaluated: the uniform ones plus a seeded "
                                                     "sample of the grid (None: the whole grid).")
    selection: Literal["pareto", "knee"] = Field(
        "pareto", description="pareto: up to max_points points spread along the searched front; knee: the front "
                              "point nearest the ideal on both (normalised) proxies.")
    max_points: int = Field(4, ge=1, description="Most checkpoints written (selection: pareto).")
    include_endpoints: bool = Field(False, description="Allow α all 0 (the base model) and all 1 (vanilla) to be "
                                                       "selected; they are rows of their own otherwise.")
    validation: Literal["auto"] | DataConfig = Field(
        "auto", description="Held-out instruction data: auto (the experiment's validation split, else records held "
                            "out of the planned vanilla run), or a data source vanilla did not train on.")
    validation_records: int = Field(128, ge=1, le=100_000, description="Held-out instruction records the search uses "
                                                           "(self-drawn: at most a fifth of the data).")
    corpus: str = Field(DEFAULT_CORPUS, description="Pre-training text for the knowledge proxy: hub id, local "
                                                    "file or builtin:toy-corpus.")
    corpus_docs: int = Field(128, ge=1, le=100_000, description="Documents of the corpus the knowledge proxy reads.")
    corpus_seq_len: int = Field(512, ge=8, le=131_072, description="Tokens per corpus document (longer ones are cut).")

    @field_validator("alpha_grid")
    @classmethod
    def _in_unit_interval(cls, grid: list[float]) -> list[float]:
        if any(not 0.0 <= a <= 1.0 for a in grid):
            raise ValueError(f"every alpha must be in [0, 1] (got {grid})")
        if len(set(grid)) != len(grid):
            raise ValueError(f"alphas must be distinct (got {grid})")
        return grid

    @model_validator(mode="after")
    def _searchable(self) -> LayerAveragingOptions:
        size = len(set(self.alpha_grid)) ** self.blocks
        if self.budget is None and size > MAX_CANDIDATES:
            raise ValueError(f"budget: the grid has {size:,} α vectors ({len(set(self.alpha_grid))} values ^ "
                             f"{self.blocks} blocks); set a budget of at most {MAX_CANDIDATES}")
        return self


class LayerAveraging:
    description: ClassVar[str] = ("HMA-style per-layer averaging (Lin et al. 2024): base + α_b·Δ_vanilla per block "
                                  "of layers, α searched on held-out proxies (reuses vanilla's run).")
    Options: ClassVar[type[MethodOptions]] = LayerAveragingOptions

    def __init__(self, options: LayerAveragingOptions) -> None:
        self.options = options

    def planned_variants(self) -> int:
        return 1 if self.options.selection == "knee" else self.options.max_points

    def plan(self, data: Sequence[Any], ctx: PlanContext) -> list[RunSpec]:
        if self.options.validation == "auto" and not ctx.validation:
            # No held-out records anywhere: vanilla's recipe without a seeded sample (trained once).
            return [RunSpec(name="main", seed=ctx.seed, data_transform=PluginRef(
                HOLDOUT_TRANSFORM, {"n": self.options.validation_records, "seed": ctx.seed}))]
        return [RunSpec(name="main", seed=ctx.seed)]  # vanilla's exact run: its key, so it is reused

    def combine(self, checkpoints: Sequence[Checkpoint], ctx: CombineContext) -> list[Checkpoint]:
        from baselines.layer_averaging.proxies import run_search
        from harness.merge.adapters import read_adapter

        if len(checkpoints) != 1:
            raise ValueError(f"layer_averaging plans one run but got {len(checkpoints)} checkpoints")
        (vanilla,) = checkpoints
        if vanilla.kind != "lora":
            raise UserError(f"layer_averaging: {vanilla.path} is a {vanilla.kind} checkpoint; it scales LoRA "
                            "adapters only")
        validation, where = self.validation_records(vanilla, ctx)
        plan = plan_blocks(read_adapter(vanilla.path).modules, self.options.blocks)
        search = run_search(vanilla, plan, validation, where, self.options, ctx)
        chosen = select(search.front, self.options.selection, self.options.max_points,
                        self.options.include_endpoints)
        record = {**search.record(), "selection": self.options.selection, "max_points": self.options.max_points,
                  "selected": [c.to_json() for c in chosen]}
        return [write_block_scaled(vanilla, plan, c.alphas, ctx.out_dir / f"alphas-{alpha_label(c.alphas)}",
                                   {**record, "validation_scores": c.to_json()}) for c in chosen]

    def validation_records(self, vanilla: Checkpoint, ctx: CombineContext) -> tuple[list[Any], str]:
        """The held-out instruction records and where they come from (never a benchmark)."""
        n = self.options.validation_records
        if isinstance(self.options.validation, DataConfig):
            return _declared(self.options.validation, n, ctx.runs_data[0] if ctx.runs_data else [])
        if ctx.validation:
            return list(ctx.validation)[:n], "the experiment's validation split (training.validation_fraction)"
        seen, held = split_held_out(list(ctx.runs_data[0]), n, ctx.seed)
        trained_on = vanilla.training.data.fingerprint if vanilla.training is not None else None
        from harness.data import fingerprint

        if trained_on != fingerprint(seen):  # the run must be the one that left these records out
            raise ValueError(f"layer_averaging: {vanilla.path} was not trained on the records minus the held-out "
                             "sample (data fingerprints differ)")
        return held, f"{len(held)} records held out of vanilla's run (seed {ctx.seed})"


def _declared(source: DataConfig, n: int, trained: Sequence[Any]) -> tuple[list[Any], str]:
    from harness.data import load_instruction_data

    records = load_instruction_data(source).records[:n]
    overlap = set(records) & set(trained)
    if overlap:
        raise UserError(f"validation: {len(overlap)} of the {len(records)} records of {source.source} are in "
                        "vanilla's training data; declare held-out data, or use validation: auto")
    return records, f"{source.source} ({len(records)} records)"
