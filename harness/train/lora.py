"""The default adapter: peft LoRA on the configured modules, initialised from the run's seed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from harness.checkpoint_payload import ADAPTER_CONFIG, write_adapter_config
from harness.train.hooks import TrainContext


class LoraAdapter:
    kind: ClassVar[str] = "lora"
    description: ClassVar[str] = "peft LoRA (r, alpha, dropout, target modules from the training config)."

    def __init__(self, options: Any, ctx: TrainContext) -> None:
        self.ctx = ctx

    def wrap(self, model: Any, ctx: TrainContext) -> Any:
        import torch
        from peft import LoraConfig, get_peft_model

        lora = ctx.training.lora
        config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                            target_modules=list(lora.target_modules), bias="none", task_type="CAUSAL_LM")
        # peft draws A from the global RNG: seeding here is what makes sub-models' inits differ
        # (or match, when a method asks for a shared init_seed).
        torch.manual_seed(ctx.init_seed)
        return get_peft_model(model, config)

    def save(self, model: Any, out_dir: Path) -> None:
        model.save_pretrained(str(out_dir))
        config = json.loads((Path(out_dir) / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        write_adapter_config(out_dir, config)  # target modules in a fixed order, not the process's

    def load(self, model: Any, adapter_dir: Path) -> Any:
        from peft import PeftModel

        return PeftModel.from_pretrained(model, str(adapter_dir))


def lora_modules(model: Any) -> list[tuple[str, Any, Any, float]]:
    """(base weight name, A weight, B weight, scale) of every active LoRA layer of a peft model.

    Names are the base model's (e.g. model.layers.0.mlp.up_proj.weight), so they match a Fisher
    or a state dict of the plain base model.
    """
    out = []
    for name, module in model.named_modules():
        lora_a, lora_b = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
        if lora_a is None or lora_b is None or not hasattr(module, "active_adapters"):
            continue
        for adapter in module.active_adapters:
            if adapter in lora_a:
                base_name = name.removeprefix("base_model.model.") + ".weight"
                out.append((base_name, lora_a[adapter].weight, lora_b[adapter].weight, module.scaling[adapter]))
    return out
