"""One LoRA-MoE linear layer: a frozen base nn.Linear plus N LoRA experts mixed per token by a router.

    y = W0 x + sum_e softmax(R x)_e * (alpha / r) * B_e A_e dropout(x)

Routing is dense and soft (every expert runs on every token), as in LoRAMoE.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LoraMoELinear(nn.Module):
    """Wraps `base` (kept frozen); the experts are stacked so all of them run in two matmuls."""

    def __init__(self, base: nn.Linear, n_experts: int, r: int, alpha: float, dropout: float) -> None:
        super().__init__()
        if n_experts < 1 or r < 1:
            raise ValueError(f"n_experts and r must be >= 1 (got {n_experts}, {r})")
        self.base_layer = base
        self.in_features, self.out_features = base.in_features, base.out_features
        self.n_experts, self.r, self.alpha = n_experts, r, alpha
        self.scaling = alpha / r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        device = base.weight.device
        # Adapter weights stay float32 even on a bf16 base (as peft does): tiny updates to B survive.
        self.lora_A = nn.Parameter(torch.empty(n_experts, r, self.in_features, device=device))
        self.lora_B = nn.Parameter(torch.zeros(n_experts, self.out_features, r, device=device))
        self.router = nn.Linear(self.in_features, n_experts, bias=False, device=device, dtype=torch.float32)
        self.last_router_probs: torch.Tensor | None = None  # [..., n_experts] of the last forward
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """A_e like peft's LoRA A (kaiming-uniform, fan-in = in_features), B_e = 0, router as nn.Linear.

        Each expert is initialised on its own [r, in] slice: on the stacked 3-D tensor torch would
        take fan-in as r * in and draw too small a range. B = 0 makes the wrapped model start out
        exactly equal to the base model, whatever the router says.
        """
        for expert in range(self.n_experts):
            nn.init.kaiming_uniform_(self.lora_A.data[expert], a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)
        self.router.reset_parameters()

    @property
    def weight(self) -> torch.Tensor:
        # Code that inspects `proj.weight` (dtype, device, shape) keeps seeing the base weight.
        return self.base_layer.weight

    def route(self, x: torch.Tensor) -> torch.Tensor:
        """Router probabilities per token, [..., n_experts], softmax taken in float32 (they sum to 1)."""
        return torch.softmax(self.router(x.to(self.router.weight.dtype)), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        probs = self.route(x)
        self.last_router_probs = probs  # read by the balancing loss after the forward
        # One dropout mask shared by the experts (the authors draw one per expert); it is what lets
        # every expert run in the same matmul, and dropout is a regulariser, not part of the mixture.
        h = self.dropout(x).to(self.lora_A.dtype)
        n, r = self.n_experts, self.r
        # B_e (g_e A_e h) = g_e B_e A_e h: weighting the rank-r codes before B is the same mixture,
        # and it lets all experts share one [in, N*r] and one [N*r, out] matmul.
        codes = h @ self.lora_A.reshape(n * r, self.in_features).t()  # [..., N*r]
        codes = (codes.unflatten(-1, (n, r)) * probs.to(codes.dtype).unsqueeze(-1)).flatten(-2)
        delta = codes @ self.lora_B.permute(0, 2, 1).reshape(n * r, self.out_features)  # [..., out]
        return result + (delta * self.scaling).to(result.dtype)

    def adapter_tensors(self) -> dict[str, nn.Parameter]:
        """The trainable tensors by their name under this module (what a checkpoint stores)."""
        return {"lora_A": self.lora_A, "lora_B": self.lora_B, "router.weight": self.router.weight}

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, n_experts={self.n_experts}, "
                f"r={self.r}, alpha={self.alpha:g}")
