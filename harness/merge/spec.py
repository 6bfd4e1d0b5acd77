"""How a method's options name a merge: an operator and its parameters (shared by DTM, soups, ...)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.errors import UserError
from harness.merge.operator import operator


class MergeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("average", description="A registered merge operator (`atax merge --help` lists them), "
                                              "e.g. average, ties, or `ensemble` to keep the sub-models and "
                                              "average their probabilities when evaluating (hf backend; K "
                                              "forward passes per token).")
    params: dict[str, Any] = Field(default_factory=dict, description="Operator parameters, e.g. density, p.")
    lora_rank: int | None = Field(None, ge=1, description="Re-factorise the merged deltas of LoRA sub-models into "
                                                          "one LoRA of this rank (truncated SVD; the error goes "
                                                          "into the manifest) instead of writing a dense model, "
                                                          "so vLLM serves it as an adapter.")

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        try:
            operator(name)
        except UserError as exc:
            raise ValueError(str(exc)) from None
        return name

    @model_validator(mode="after")
    def _refactorable(self) -> MergeSpec:
        if self.lora_rank is not None and not operator(self.name).refactorable:
            raise ValueError(f"lora_rank: merge '{self.name}' is not re-factorised; remove lora_rank")
        return self
