"""Diagonal empirical Fisher: the mean over samples of squared per-sample gradients of the
log-likelihood, for chosen parameters. Shared by Fisher merging and EWC.

Per-sample gradients (one backward per sample) are what the empirical Fisher needs; squaring a
batch gradient would not be it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from harness.data.templates import TokenizedExample
from harness.train.batching import make_micro_batches
from harness.train.loss import summed_token_loss


def empirical_fisher(model: Any, examples: Sequence[TokenizedExample], names: Iterable[str], device: Any,
                     pad_id: int, max_seq_len: int) -> dict[str, torch.Tensor]:
    """F[name] for every parameter in `names` (which must exist in `model`)."""
    wanted = set(names)
    params = {name: p for name, p in model.named_parameters() if name in wanted}
    missing = wanted - set(params)
    if missing:
        raise ValueError(f"parameters not in the model: {sorted(missing)[:3]}")
    for name, p in model.named_parameters():
        p.requires_grad_(name in params)
    model.eval()  # no dropout: the Fisher of the model as it is
    fisher = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    for example in examples:
        (batch,) = make_micro_batches([example], "padded", 1, max_seq_len, pad_id)
        model.zero_grad(set_to_none=True)
        summed_token_loss(model, batch, device).backward()  # = -log p(targets)
        for name, p in params.items():
            fisher[name] += p.grad.detach().float() ** 2
    model.zero_grad(set_to_none=True)
    return {name: (f / max(len(examples), 1)).cpu() for name, f in fisher.items()}
