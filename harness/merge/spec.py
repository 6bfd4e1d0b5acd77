"""How a method's options name a merge: an operator and its parameters (shared by DTM, soups, ...)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness import registry


class MergeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("average", description="Merge operator (see harness/merge/operators.py), or `ensemble` "
                                              "to keep the sub-models and average their probabilities when "
                                              "evaluating (hf backend; K forward passes per token).")
    params: dict[str, Any] = Field(default_factory=dict, description="Operator parameters, e.g. density, p.")

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        if name not in registry.merges and name != "ensemble":
            raise ValueError(f"unknown merge operator '{name}'; known: {', '.join(registry.merges.names())}")
        return name
