"""The method protocol: every method is plan -> train x K -> combine (DESIGN.md).

A method is a class registered under a name (entry-point group `atax.methods`). It is built
from its validated options, `plan`s the training runs its data needs, and `combine`s the
resulting checkpoints into one. It never knows where its runs execute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from harness.checkpoint import Checkpoint


class MethodOptions(BaseModel):
    """Base for a method's options: unknown keys are errors, as everywhere in the config."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class PluginRef:
    """A registered hook by name with its options (a regulariser, a data transform, ...)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSpec:
    """One training run: what data it sees and how it trains.

    `indices` selects rows of the method's data (None: all rows, in the loader's order);
    `seed` drives data order and, unless `init_seed` is given, the adapter initialisation,
    so distinct runs do not share one LoRA init by accident.
    """

    name: str
    seed: int
    indices: tuple[int, ...] | None = None
    init_seed: int | None = None
    training_overrides: dict[str, Any] = field(default_factory=dict)
    data_transform: PluginRef | None = None
    regularizer: PluginRef | None = None
    auxiliary_loss: PluginRef | None = None
    adapter: PluginRef = PluginRef("lora")


@dataclass(frozen=True)
class PlanContext:
    """What a method may know when planning: the seed of this repetition and a scratch dir."""

    seed: int
    workdir: Path
    base_model: str | None = None  # as configured (hub id, path or builtin:)
    data_source: str = "the data"  # for messages that name the data
    validation: Sequence[Any] = ()  # the experiment's held-out records (training.validation_fraction)


@dataclass(frozen=True)
class CombineContext:
    """What a method may know when combining: the seed, where to write a new checkpoint, and
    each run's training records (Fisher merging needs the sub-models' own data)."""

    seed: int
    out_dir: Path
    runs_data: Sequence[Sequence[Any]] = ()
    validation: Sequence[Any] = ()  # held-out records (training.validation_fraction), for greedy soups
    template: str = "alpaca"
    max_seq_len: int = 1024


@runtime_checkable
class Method(Protocol):
    """A training recipe. `Options` validates the `options:` block of its config entry.

    Optional: `planned_runs() -> int` and `planned_variants() -> int` tell `atax run --dry-run`
    how many runs `plan` will return and how many checkpoints `combine` will (default 1 each),
    so a dry run needs no data. `version` (default "0") is part of the key of every job the
    method takes part in: bump it when a change alters what `plan` or `combine` produce.
    `merge_operators() -> list[str]` names the merge operators `combine` uses (default: the
    merge specs found in its options), so their versions join the combine's key.
    `light_steps` (a set, or a method returning one, of "plan" / "combine"; default none) names
    the steps that load no model: the pipeline runs those in its scheduler's process instead of
    a worker process each.
    """

    description: ClassVar[str]
    Options: ClassVar[type[MethodOptions]]

    def __init__(self, options: MethodOptions) -> None: ...

    def plan(self, data: Sequence[Any], ctx: PlanContext) -> list[RunSpec]: ...

    def combine(self, checkpoints: Sequence[Checkpoint], ctx: CombineContext) -> Checkpoint | Sequence[Checkpoint]:
        """One checkpoint, or several variants (each manifest then names its `variant`, e.g. alpha=0.5)."""
        ...


def run_spec_to_dict(spec: RunSpec) -> dict[str, Any]:
    """JSON-ready form of a RunSpec (the pipeline hands plans from one process to the next)."""
    def ref(r: PluginRef | None) -> dict[str, Any] | None:
        return None if r is None else {"name": r.name, "options": r.options}

    return {"name": spec.name, "seed": spec.seed, "indices": None if spec.indices is None else list(spec.indices),
            "init_seed": spec.init_seed, "training_overrides": spec.training_overrides,
            "data_transform": ref(spec.data_transform), "regularizer": ref(spec.regularizer),
            "auxiliary_loss": ref(spec.auxiliary_loss), "adapter": ref(spec.adapter)}


def run_spec_from_dict(data: dict[str, Any]) -> RunSpec:
    def ref(r: dict[str, Any] | None) -> PluginRef | None:
        return None if r is None else PluginRef(r["name"], r.get("options", {}))

    return RunSpec(name=data["name"], seed=data["seed"],
                   indices=None if data["indices"] is None else tuple(data["indices"]),
                   init_seed=data["init_seed"], training_overrides=data["training_overrides"],
                   data_transform=ref(data["data_transform"]), regularizer=ref(data["regularizer"]),
                   auxiliary_loss=ref(data["auxiliary_loss"]), adapter=ref(data["adapter"]) or PluginRef("lora"))


def only_run(checkpoints: Sequence[Checkpoint], method: str) -> Checkpoint:
    """The combine of single-run methods: the run's checkpoint, as it is."""
    if len(checkpoints) != 1:
        raise ValueError(f"{method} plans one run but got {len(checkpoints)} checkpoints")
    return checkpoints[0]
