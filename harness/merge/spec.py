"""How a method's options name a merge: an operator and its parameters (shared by DTM, soups, ...)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness import registry


class MergeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("average", description="Merge operator (see harness/merge/operators.py), or `ensemble` "
                                              "to keep the sub-models and average their probabilities when "
                                              "evaluating (hf backend; K forward passes per token).")
    params: dict[str, Any] = Field(default_factory=dict, description="Operator parameters, e.g. density, p.")
    lora_rank: int | None = Field(None, ge=1, description="Re-factorise the merged deltas of LoRA sub-models into "
                                                          "one LoRA of this rank (truncated SVD; the error goes "
                                                          "into the manifest) instead of writing a dense model, "
                                                          "so vLLM serves it as an adapter.")

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        if name not in registry.merges and name != "ensemble":
            raise ValueError(f"unknown merge operator '{name}'; known: {', '.join(registry.merges.names())}")
        return name

    @model_validator(mode="after")
    def _refactorable(self) -> MergeSpec:
        if self.lora_rank is not None and self.name in ("ensemble", "lora_factor_average"):
            raise ValueError(f"lora_rank: merge '{self.name}' is not re-factorised; remove lora_rank")
        return self
