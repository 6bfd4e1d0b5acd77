"""Hooks through which methods change training without touching the engine.

Each hook kind has a registry (harness.registry) and a Protocol here. A hook class is built as
`cls(options, ctx)`, where `options` is its validated `Options` model (if it declares one) and
`ctx` the TrainContext. See docs/hooks.md for a short example of each.

- Regularizer.penalty(model, step) -> scalar tensor, added to the step's loss (L2, EWC).
- DataTransform.apply(records, ctx) -> records, before tokenisation (Replay, Deita).
- AdapterFactory.wrap(model, ctx) -> model and .save(model, dir) (LoRA, LoRA-MoE).
- AuxiliaryLoss.loss(model, step) -> scalar tensor or None, after each forward (MoE balancing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from harness.config.schema import TrainingConfig
from harness.data.records import TrainRecord
from harness.method import PluginRef, RunSpec


@dataclass(frozen=True)
class TrainContext:
    """What a hook may know about the run it is part of."""

    base_model: str  # as configured (hub id, path or builtin:)
    base_revision: str | None
    training: TrainingConfig
    run: RunSpec
    init_seed: int
    device: Any  # torch.device
    tokenizer: Any
    cache_dir: Path


@runtime_checkable
class Regularizer(Protocol):
    def penalty(self, model: Any, step: int) -> Any: ...


@runtime_checkable
class DataTransform(Protocol):
    def apply(self, records: list[TrainRecord], ctx: TrainContext) -> list[TrainRecord]: ...


@runtime_checkable
class AdapterFactory(Protocol):
    kind: ClassVar[str]  # the checkpoint kind it writes, e.g. "lora"

    def wrap(self, model: Any, ctx: TrainContext) -> Any: ...

    def save(self, model: Any, out_dir: Path) -> None: ...

    def load(self, model: Any, adapter_dir: Path) -> Any: ...


@runtime_checkable
class AuxiliaryLoss(Protocol):
    def loss(self, model: Any, step: int) -> Any: ...


def build_hook(registry: Any, ref: PluginRef, ctx: TrainContext) -> Any:
    """Instantiate the hook `ref` names, validating its options with the hook's Options model."""
    cls = registry.get(ref.name)
    options_model = getattr(cls, "Options", None)
    options = options_model.model_validate(ref.options) if options_model is not None else ref.options
    return cls(options, ctx)
