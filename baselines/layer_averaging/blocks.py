"""Contiguous blocks of adapted layers, and a LoRA checkpoint with one α per block.

ΔW of a LoRA module is s·B·A, so base + α_b·ΔW is the same adapter with B scaled by α_b: exact,
and still a LoRA adapter that any backend serves. α all 1 is the input, all 0 the base model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.checkpoint import Checkpoint, find_complete, write_checkpoint
from harness.errors import UserError
from harness.keys import content_key

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def layer_index(module: str) -> int | None:
    """The transformer layer a module belongs to (`model.layers.7.mlp.up_proj.weight` -> 7)."""
    match = _LAYER.search(module)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class BlockPlan:
    """Layer indices per block, lowest layers first."""

    blocks: tuple[tuple[int, ...], ...]

    def block_of(self, module: str) -> int:
        index = layer_index(module)
        for b, layers in enumerate(self.blocks):
            if index in layers:
                return b
        raise KeyError(f"{module} is in no block of {self.blocks}")

    def describe(self) -> list[str]:
        return [f"layers {layers[0]}-{layers[-1]}" if len(layers) > 1 else f"layer {layers[0]}"
                for layers in self.blocks]


def plan_blocks(modules: Iterable[str], n_blocks: int) -> BlockPlan:
    """Split the adapted layers into min(n_blocks, layers) contiguous blocks whose sizes differ by at
    most one (the lower blocks take the extra layers)."""
    names = list(modules)
    outside = [m for m in names if layer_index(m) is None]
    if outside:
        raise UserError(f"layer_averaging: adapted module {outside[0]} is not inside a numbered layer "
                        "(model.layers.N); adapt only transformer-layer modules (training.lora.target_modules)")
    layers = sorted({layer_index(m) for m in names})  # type: ignore[type-var]
    if not layers:
        raise UserError("layer_averaging: vanilla's adapter has no LoRA modules")
    n = min(n_blocks, len(layers))
    size, extra = divmod(len(layers), n)
    blocks, start = [], 0
    for b in range(n):
        stop = start + size + (1 if b < extra else 0)
        blocks.append(tuple(layers[start:stop]))  # type: ignore[arg-type]
        start = stop
    return BlockPlan(tuple(blocks))


def alpha_label(alphas: Sequence[float]) -> str:
    return ",".join(f"{a:g}" for a in alphas)


def write_block_scaled(checkpoint: Checkpoint, plan: BlockPlan, alphas: Sequence[float], out_dir: Path,
                       record: dict[str, Any]) -> Checkpoint:
    """`checkpoint`'s adapter with each module's B scaled by its block's α (reused when already written)."""
    from harness.merge.adapters import read_adapter, write_adapter

    if len(alphas) != len(plan.blocks):
        raise ValueError(f"{len(alphas)} alphas for {len(plan.blocks)} blocks")
    run_key = checkpoint.run_key
    key = content_key({"layer_averaging": run_key, "blocks": plan.blocks, "alphas": list(alphas)})
    existing = find_complete(out_dir, key)
    if existing is not None:
        return existing
    adapter = read_adapter(checkpoint.path)
    modules = {name: (m.a, alphas[plan.block_of(name)] * m.b) for name, m in adapter.modules.items()}
    manifest = {"kind": "lora", "run_key": key, "base_model": checkpoint.base_model.as_dict(),
                "variant": f"alphas={alpha_label(alphas)}",
                "scaled_from": {"path": str(checkpoint.path), "run_key": run_key, "block_alphas": list(alphas)},
                "layer_averaging": {**record, "blocks": [list(b) for b in plan.blocks], "alphas": list(alphas)}}
    return write_checkpoint(out_dir, manifest, lambda tmp: write_adapter(tmp, adapter.config, modules))
