"""The `hf` backend: lm-eval's HFLM (transformers) on CPU or GPU, a LoRA adapter put on with peft."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from harness.errors import UserError
from harness.evaluate.protocols import PluginOptions

if TYPE_CHECKING:
    from lm_eval.api.model import LM

    from harness.evaluate.target import EvalTarget


class HFOptions(PluginOptions):
    batch_size: int | Literal["auto"] = Field(8, description="Requests per forward pass (auto: lm-eval probes).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; auto = bfloat16 on a GPU that supports it, else float32.")
    device: str | None = Field(None, description="torch device; None = cuda if available, else cpu.")
    max_length: int | None = Field(None, ge=16, description="Context length; None = the model's own.")


class HFBackend:
    description: ClassVar[str] = "transformers via lm-eval's HFLM: base model + peft LoRA adapter, CPU or GPU."
    Options: ClassVar[type[HFOptions]] = HFOptions
    cache_responses: ClassVar[bool] = True

    def make_lm(self, target: EvalTarget, options: HFOptions, tasks: Mapping[str, str]) -> LM:
        if target.model is None:
            raise UserError("CHECKPOINT_OR_MODEL is missing; the hf backend evaluates a checkpoint or model")
        if target.kind in ("ensemble", "loramoe"):
            raise UserError(f"{target.ref}: {target.kind} checkpoints are not supported by the hf backend yet; "
                            "evaluate its sub-models or a merged checkpoint")
        import torch
        from lm_eval.models.huggingface import HFLM

        from harness.modeling import pick_device, resolve_dtype

        device_name = options.device or str(pick_device())
        dtype = resolve_dtype(options.dtype, torch.device(device_name))
        kwargs: dict[str, Any] = {"pretrained": target.model, "device": device_name, "dtype": dtype,
                                  "batch_size": options.batch_size, "peft": str(target.adapter) if target.adapter else None,
                                  "tokenizer": target.tokenizer, "max_length": options.max_length}
        if target.revision:
            kwargs["revision"] = target.revision
        try:
            return HFLM(**kwargs)
        except OSError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot load model '{target.model}' ({first}); give a local model directory "
                            "or download the model first") from None
