"""Elastic Weight Consolidation against the pre-trained weights: loss + λ·Σ F ⊙ ΔW².

F is the diagonal empirical Fisher of the *base* model's adapted weights on a pre-training
text sample (the paper: RedPajama), computed once per (base model, corpus, size) and cached.
F is divided by its mean by default, so λ means what it means for L2 (same default, 0.01) and
EWC with F = 1 is exactly L2; raw Fishers are tiny (squared gradients) and would need λ in the
thousands.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from baselines.l2 import DEFAULT_LAMBDA, PenaltyOptions
from harness.atomic import atomic_dir
from harness.checkpoint import Checkpoint
from harness.keys import content_key
from harness.method import CombineContext, MethodOptions, PlanContext, PluginRef, RunSpec, only_run
from harness.train.hooks import TrainContext
from harness.train.lora import lora_modules

if TYPE_CHECKING:  # listing methods must not import torch
    import torch

DEFAULT_CORPUS = "togethercomputer/RedPajama-Data-1T-Sample"


class EWCOptions(PenaltyOptions):
    corpus: str = Field(DEFAULT_CORPUS, description="Pre-training text: hub id, local file or builtin:toy-corpus.")
    fisher_tokens: int = Field(100_000, ge=1, description="Tokens of corpus text the Fisher is estimated on.")
    fisher_seq_len: int = Field(512, ge=8, description="Tokens per Fisher sample (documents are cut).")
    normalize: bool = Field(True, description="Divide F by its mean, so λ is on the L2 scale.")


def base_fisher(ctx: TrainContext, options: EWCOptions, names: list[str]) -> dict[str, torch.Tensor]:
    """The base model's Fisher for `names`, from the cache or computed once."""
    from safetensors.torch import load_file, save_file

    from harness.data.corpus import load_corpus
    from harness.data.templates import tokenize_text
    from harness.fisher import empirical_fisher
    from harness.modeling import load_causal_lm

    key = content_key({"base": ctx.base_model, "revision": ctx.base_revision, "corpus": options.corpus,
                       "tokens": options.fisher_tokens, "seq_len": options.fisher_seq_len, "names": sorted(names)})
    cached = ctx.cache_dir / "ewc-fisher" / key / "fisher.safetensors"
    if cached.is_file():
        return load_file(str(cached))
    docs = load_corpus(options.corpus, n_docs=max(1, options.fisher_tokens // 32), seed=0)
    examples, tokens = [], 0
    for doc in docs:
        if tokens >= options.fisher_tokens:
            break
        example = tokenize_text(doc, ctx.tokenizer, options.fisher_seq_len)
        examples.append(example)
        tokens += len(example.input_ids)
    model = load_causal_lm(ctx.base_model, ctx.base_revision, "float32", ctx.device)
    fisher = empirical_fisher(model, examples, names, ctx.device, ctx.tokenizer.pad_token_id, options.fisher_seq_len)
    del model
    with atomic_dir(cached.parent) as tmp:
        save_file(fisher, str(tmp / cached.name))
    return fisher


class EWCPenalty:
    """Regulariser hook `ewc`: λ·Σ F ⊙ (s·B·A)² (the delta is materialised one module at a time)."""

    description: ClassVar[str] = "λ·Σ F⊙ΔW² with F the base model's Fisher on pre-training text."
    Options: ClassVar[type[MethodOptions]] = EWCOptions

    def __init__(self, options: EWCOptions, ctx: TrainContext, fisher: dict[str, torch.Tensor] | None = None) -> None:
        self.options, self.ctx = options, ctx
        self._fisher = fisher

    def fisher_for(self, model: Any) -> dict[str, torch.Tensor]:

        if self._fisher is None:
            names = [name for name, *_ in lora_modules(model)]
            fisher = base_fisher(self.ctx, self.options, names)
            if self.options.normalize:
                # In name order and float64: a Fisher fresh from the computation and the same one
                # read back from the cache (keys in another order) must give the same run, bit for bit.
                total = sum(float(fisher[n].double().sum()) for n in sorted(fisher))
                count = sum(fisher[n].numel() for n in fisher)
                mean = max(total / count, 1e-30)
                fisher = {n: (f.double() / mean).float() for n, f in fisher.items()}
            self._fisher = {n: f.to(self.ctx.device) for n, f in fisher.items()}
        return self._fisher

    def penalty(self, model: Any, step: int) -> torch.Tensor:
        fisher = self.fisher_for(model)
        total = None
        for name, a, b, scale in lora_modules(model):
            term = (fisher[name] * (scale * (b @ a)) ** 2).sum()
            total = term if total is None else total + term
        if total is None:
            raise ValueError("the model has no active LoRA layer to regularise")
        return self.options.lambda_ * total


class EWC:
    version: ClassVar[str] = "1"  # bump when its behaviour changes: part of the keys of its jobs
    light_steps: ClassVar[frozenset[str]] = frozenset({"plan", "combine"})  # no model loaded: run by the scheduler
    description: ClassVar[str] = (f"SFT with an EWC penalty against the base weights (Fisher on pre-training text; "
                                  f"default λ = {DEFAULT_LAMBDA} on a mean-normalised Fisher).")
    Options: ClassVar[type[MethodOptions]] = EWCOptions

    def __init__(self, options: EWCOptions) -> None:
        self.options = options

    def plan(self, data: Sequence[Any], ctx: PlanContext) -> list[RunSpec]:
        return [RunSpec(name="main", seed=ctx.seed,
                        regularizer=PluginRef("ewc", self.options.model_dump(mode="json", by_alias=True)))]

    def combine(self, checkpoints: Sequence[Checkpoint], ctx: CombineContext) -> Checkpoint:
        return only_run(checkpoints, "ewc")
