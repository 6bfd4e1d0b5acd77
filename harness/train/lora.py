"""The default adapter: peft LoRA on the configured modules, initialised from the run's seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

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

    def load(self, model: Any, adapter_dir: Path) -> Any:
        from peft import PeftModel

        return PeftModel.from_pretrained(model, str(adapter_dir))
