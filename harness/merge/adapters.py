"""Read and write peft LoRA adapters as plain tensors: per adapted module, A [r, in], B [out, r], scale.

ΔW of a module is scale · B @ A with scale = alpha / r (alpha / sqrt(r) under rsLoRA).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from harness.checkpoint_payload import ADAPTER_CONFIG, ADAPTER_WEIGHTS, write_adapter_config
from harness.errors import UserError

__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "Adapter", "LoraModule", "read_adapter", "write_adapter",
           "write_adapter_config"]
_PREFIX = "base_model.model."


@dataclass
class LoraModule:
    a: torch.Tensor  # [r, in]
    b: torch.Tensor  # [out, r]
    scale: float

    def delta(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """scale · B[start:stop] @ A: rows of ΔW, so big modules can be merged in chunks."""
        return self.scale * (self.b[start:stop].float() @ self.a.float())


@dataclass
class Adapter:
    path: Path
    config: dict[str, Any]
    modules: dict[str, LoraModule]  # key: the base model's weight name, e.g. model.layers.0.mlp.up_proj.weight

    @property
    def target_modules(self) -> list[str]:
        return sorted(set(self.config.get("target_modules") or []))

    @property
    def rank(self) -> int:
        return int(self.config["r"])


def lora_scale(config: dict[str, Any], rank: int) -> float:
    alpha = float(config.get("lora_alpha", rank))
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def read_adapter(path: Path) -> Adapter:
    path = Path(path)
    config_file, weights_file = path / ADAPTER_CONFIG, path / ADAPTER_WEIGHTS
    if not config_file.is_file() or not weights_file.is_file():
        raise UserError(f"{path}: not a LoRA adapter (needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise UserError(f"{path}: adapters with per-module rank_pattern/alpha_pattern are not supported by the merger")
    tensors = load_file(str(weights_file))
    modules: dict[str, LoraModule] = {}
    for key, a in tensors.items():
        if ".lora_A." not in key:
            continue
        module = key.split(".lora_A.")[0]
        b = tensors[key.replace(".lora_A.", ".lora_B.")]
        name = (module[len(_PREFIX):] if module.startswith(_PREFIX) else module) + ".weight"
        modules[name] = LoraModule(a, b, lora_scale(config, a.shape[0]))
    return Adapter(path, config, modules)


def write_adapter(out_dir: Path, config: dict[str, Any], modules: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Write peft files: `modules` maps base weight names to (A, B)."""
    tensors = {}
    for name, (a, b) in modules.items():
        module = _PREFIX + name[: -len(".weight")]
        tensors[f"{module}.lora_A.weight"] = a.contiguous()
        tensors[f"{module}.lora_B.weight"] = b.contiguous()
    save_file(tensors, str(Path(out_dir) / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    write_adapter_config(out_dir, config)
