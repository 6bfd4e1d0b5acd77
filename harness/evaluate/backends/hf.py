"""The `hf` backend: lm-eval's HFLM (transformers) on CPU or GPU, a LoRA adapter put on with peft.

Log-likelihoods and greedy generations go through atax's engines (`harness.evaluate.prefix_hflm`:
shared prefixes computed once, rows that stop on their own); lm-eval's path remains for what
they do not cover (sampling, truncated requests, models whose cache they cannot drive).
"""

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
    batch_size: int | Literal["auto"] = Field(
        8, description="Requests per forward pass on lm-eval's own path (auto: lm-eval probes).")
    prefix_cache: bool = Field(True, description="Shared-prefix log-likelihoods and batched greedy generation "
                               "(same answers; false: lm-eval's HFLM path for everything).")
    generation_rows: int = Field(16, ge=1, description="Prompts decoded together by the batched generator.")
    token_budget: int = Field(512, ge=16, description="Starting padded tokens per forward of the prefix "
                              "scorer (then doubled while measured throughput improves).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; auto = bfloat16 on a GPU that supports it, else float32.")
    device: str | None = Field(None, description="torch device; None = cuda if available, else cpu.")
    max_length: int | None = Field(None, ge=16, description="Context length; None = the model's own.")


class HFBackend:
    description: ClassVar[str] = "transformers via lm-eval's HFLM: base model + peft LoRA adapter, CPU or GPU."
    Options: ClassVar[type[HFOptions]] = HFOptions
    cache_responses: ClassVar[bool] = True
    # 1: on models with sliding-window or chunked attention, requests longer than the window (and all
    # generation) on lm-eval's path; the engines had scored them as if there were no window
    version: ClassVar[str] = "1"

    def make_lm(self, target: EvalTarget, options: HFOptions, tasks: Mapping[str, str]) -> LM:
        if target.model is None:
            raise UserError("CHECKPOINT_OR_MODEL is missing; the hf backend evaluates a checkpoint or model")
        import torch

        from harness.evaluate.prefix_hflm import PrefixCachedHFLM
        from harness.modeling import pick_device, resolve_dtype

        device_name = options.device or str(pick_device())
        dtype = resolve_dtype(options.dtype, torch.device(device_name))
        kwargs: dict[str, Any] = {"pretrained": target.model, "device": device_name, "dtype": dtype,
                                  "batch_size": options.batch_size, "peft": str(target.adapter) if target.adapter else None,
                                  "tokenizer": target.tokenizer, "max_length": options.max_length}
        if target.revision:
            kwargs["revision"] = target.revision
        if target.kind == "ensemble":
            return _ensemble_lm(target, kwargs)
        kwargs.update(prefix_cache=options.prefix_cache, generation_rows=options.generation_rows,
                      token_budget=options.token_budget)
        if target.kind not in ("lora", "dense", "base", "model"):
            return _adapter_kind_lm(target, kwargs)
        try:
            return PrefixCachedHFLM(**kwargs)
        except OSError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot load model '{target.model}' ({first}); give a local model directory "
                            "or download the model first") from None


def _model_kwargs(target: EvalTarget, kwargs: dict[str, Any]) -> dict[str, Any]:
    """HFLM arguments for a model instance built here: the tokenizer comes from the base model."""
    out = {k: v for k, v in kwargs.items() if k not in ("pretrained", "dtype", "peft", "revision", "device")}
    out["tokenizer"] = target.tokenizer or target.model
    return out


def _ensemble_lm(target: EvalTarget, kwargs: dict[str, Any]) -> LM:
    """K adapters on one base, probabilities averaged (K forward passes per token); lm-eval's own
    request path (the prefix engines drive one model's cache, not K mixed ones)."""
    import torch

    from harness.evaluate.ensemble_lm import EnsembleLM, load_members
    from harness.modeling import load_causal_lm

    base = load_causal_lm(str(target.model), target.revision, _dtype_name(kwargs["dtype"]), torch.device(kwargs["device"]))
    model, members, weights = load_members(base, target.path)
    # Batch size 1: the generation loop feeds unpadded contexts to each member's KV cache.
    return EnsembleLM(members, weights, pretrained=model, **{**_model_kwargs(target, kwargs), "batch_size": 1})


def _adapter_kind_lm(target: EvalTarget, kwargs: dict[str, Any]) -> LM:
    """Checkpoint kinds made by an adapter plug-in (e.g. loramoe): the plug-in loads them."""
    import torch

    from harness import registry
    from harness.evaluate.prefix_hflm import PrefixCachedHFLM
    from harness.modeling import load_causal_lm

    if target.kind not in registry.adapters:
        raise UserError(f"{target.ref}: no installed adapter plug-in loads '{target.kind}' checkpoints")
    adapter_cls = registry.adapters.get(target.kind)
    options_model = getattr(adapter_cls, "Options", None)
    adapter = adapter_cls(options_model() if options_model is not None else {}, None)
    base = load_causal_lm(str(target.model), target.revision, _dtype_name(kwargs["dtype"]), torch.device(kwargs["device"]))
    model = adapter.load(base, target.path).eval()
    return PrefixCachedHFLM(pretrained=model, **_model_kwargs(target, kwargs))


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")
