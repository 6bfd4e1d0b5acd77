"""Merges that keep a LoRA adapter: the exact average and the authors' factor average.

The exact average concatenates the sub-adapters into one of rank Σ rᵢ: A = [A₁; …; A_K],
B = [α₁s₁B₁, …, α_Ks_KB_K] with scale 1, so B·A = Σ αᵢ sᵢ Bᵢ Aᵢ exactly and vLLM can serve it.
Averaging A and B separately is not the average (cross terms BᵢAⱼ), and peft's
`add_weighted_adapter(combination_type="linear")` scales each factor by √wᵢ — neither is used
for `average`. `lora_factor_average` reproduces the DTM authors' released code (A and B
averaged separately) and is named as the approximation it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from harness.merge.adapters import Adapter
from harness.merge.operators import check_weights


def _merged_config(adapters: Sequence[Adapter], rank: int, alpha: float) -> dict[str, Any]:
    config = dict(adapters[0].config)
    config.update(r=rank, lora_alpha=alpha, use_rslora=False, lora_dropout=0.0, rank_pattern={}, alpha_pattern={})
    return config


def exact_average(adapters: Sequence[Adapter], weights: Sequence[float] | None = None
                  ) -> tuple[dict[str, Any], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    w = check_weights(weights, len(adapters))
    total_rank = sum(a.rank for a in adapters)
    modules = {}
    for name in adapters[0].modules:
        parts = [a.modules[name] for a in adapters]
        a_cat = torch.cat([p.a.float() for p in parts], dim=0)
        b_cat = torch.cat([wi * p.scale * p.b.float() for wi, p in zip(w, parts, strict=True)], dim=1)
        modules[name] = (a_cat, b_cat)
    # alpha = r makes the merged adapter's own scale exactly 1.
    return _merged_config(adapters, total_rank, float(total_rank)), modules


def factor_average(adapters: Sequence[Adapter], weights: Sequence[float] | None = None
                   ) -> tuple[dict[str, Any], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    w = check_weights(weights, len(adapters))
    modules = {}
    for name in adapters[0].modules:
        parts = [a.modules[name] for a in adapters]
        a_avg = sum(wi * p.a.float() for wi, p in zip(w, parts, strict=True))
        b_avg = sum(wi * p.b.float() for wi, p in zip(w, parts, strict=True))
        modules[name] = (a_avg, b_avg)
    return dict(adapters[0].config), modules  # inputs share rank, alpha and rsLoRA (checked by the caller)
