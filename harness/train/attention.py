"""Attention for training batches, and the batching plan that goes with it.

transformers' sdpa path turns the restarting `position_ids` of a packed row into a
block-diagonal [L, L] mask: every token of the row then pays attention over the whole row,
masked, and the masked kernel cannot skip the causal half. `varlen_attention` instead runs
causal SDPA on each sample's own span of the row (the flash kernel, on CPU and GPU), so a packed
row costs what its samples cost alone — what flash-attn's varlen kernel does, without needing it.

It is installed on the training model only, without a mask function, so transformers hands it
no mask: every batch the engine builds is right-padded (padding comes after a row's real
tokens and, under causal attention, is never seen by them) and packed samples are told apart by
position ids that restart at 0. `plan_batching` checks at start-up that the model gives the same
logits with it and keeps packed samples apart, and falls back otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from harness.train.batching import Batching, packed_row_length

VARLEN = "atax_varlen"
# Implementations whose kernels take packed rows without a quadratic mask.
_VARLEN_NATIVE = ("flash_attention_2", "flash_attention_3", VARLEN)


@dataclass(frozen=True)
class BatchingPlan:
    how: Batching  # what the engine will actually use (packed falls back to grouped if unsafe)
    row_length: int  # capacity of a packed row
    attention: str  # the model's attention implementation during training


def varlen_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                     position_ids: torch.Tensor | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Causal attention over each sample of each row; query is [rows, heads, length, head_dim]."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return sdpa_attention_forward(module, q, k, v, None, dropout=dropout, scaling=scaling, is_causal=True)[0]

    if attention_mask is not None:  # someone else's batch with a mask: honour it
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    spans = _spans_of_this_forward(position_ids, query.shape[0], query.shape[2])
    if spans is None:  # one sample per row: a single batched call
        return causal(query, key, value), None
    rows = []
    # split (not slicing) so that the backward pass concatenates gradients instead of
    # zero-filling a full-size tensor per sample
    for lengths, q, k, v in zip(spans, query.split(1), key.split(1), value.split(1), strict=True):
        parts = zip(q.split(lengths, dim=2), k.split(lengths, dim=2), v.split(lengths, dim=2), strict=True)
        rows.append(torch.cat([causal(*part) for part in parts], dim=1))  # outputs are [1, length, heads, dim]
    return torch.cat(rows), None


_last_spans: tuple[Any, int, list[list[int]] | None] = (None, -1, None)


def _spans_of_this_forward(position_ids: torch.Tensor | None, rows: int, length: int) -> list[list[int]] | None:
    """sample_spans, computed once per forward: every layer gets the same position_ids tensor,
    and finding the spans costs a device sync."""
    global _last_spans
    if position_ids is None:
        return None
    tensor, version, spans = _last_spans
    if tensor is not position_ids or version != position_ids._version:  # _version: bumped by in-place edits
        spans = sample_spans(position_ids, rows, length)
        _last_spans = (position_ids, position_ids._version, spans)
    return spans


def sample_spans(position_ids: torch.Tensor | None, rows: int, length: int) -> list[list[int]] | None:
    """Lengths of the samples in each row (positions restart where a sample starts), or None
    when every row holds one sample."""
    if position_ids is None:
        return None
    positions = position_ids.expand(rows, length)
    starts = positions[:, 1:] != positions[:, :-1] + 1
    if not bool(starts.any()):
        return None
    spans = []
    for row in starts.cpu():
        cuts = [0, *(row.nonzero().flatten() + 1).tolist(), length]
        spans.append([b - a for a, b in zip(cuts, cuts[1:], strict=False)])
    return spans


def plan_batching(model: Any, requested: Batching, device: torch.device, vocab_size: int,
                  max_seq_len: int) -> BatchingPlan:
    """Install varlen attention where it is exact, and pick what packed rows may hold.

    With a varlen-capable attention a packed row may be max_seq_len long (it costs no more than
    its samples); with a masked one it is capped (see `packed_row_length`). Packing that would
    let samples see each other falls back to length grouping.
    """
    attention = _install_varlen(model, device, vocab_size, max_seq_len)
    varlen = attention in _VARLEN_NATIVE
    how = requested
    if how == "packed" and not packing_is_isolated(model, device, vocab_size):
        how = "grouped"
    row_length = max_seq_len if varlen else packed_row_length(model.config.hidden_size, max_seq_len)
    return BatchingPlan(how, row_length, attention)


def _install_varlen(model: Any, device: torch.device, vocab_size: int, max_seq_len: int) -> str:
    config = model.config
    current = getattr(config, "_attn_implementation", None) or "eager"
    window = getattr(config, "sliding_window", None)
    if (current not in ("sdpa", "eager") or not hasattr(model, "set_attn_implementation")
            or getattr(config, "attn_logit_softcapping", None) or (window is not None and window < max_seq_len)):
        return current  # flash kernels already do varlen; windows and softcaps are not ours to redo
    from transformers import AttentionInterface

    AttentionInterface.register(VARLEN, varlen_attention)
    sample = torch.randint(3, vocab_size, (2, 9), generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        before = model(input_ids=sample, use_cache=False).logits
        try:
            model.set_attn_implementation(VARLEN)
        except (ValueError, NotImplementedError):  # a model class that takes no custom attention
            return current
        after = model(input_ids=sample, use_cache=False).logits
    if not same_logits(before, after):
        model.set_attn_implementation(current)  # this model's attention is more than causal SDPA
        return current
    return VARLEN


def packing_is_isolated(model: Any, device: torch.device, vocab_size: int) -> bool:
    """True when this model's attention keeps packed samples apart (logits equal to unpacked)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(3, vocab_size, (1, 7), generator=generator)
    b = torch.randint(3, vocab_size, (1, 5), generator=generator)
    with torch.no_grad():
        alone = model(input_ids=b.to(device), use_cache=False).logits
        packed = model(input_ids=torch.cat([a, b], dim=1).to(device),
                       position_ids=torch.cat([torch.arange(7), torch.arange(5)]).unsqueeze(0).to(device),
                       use_cache=False).logits[:, 7:]
    return same_logits(alone, packed)


def same_logits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to the kernels' rounding: relative to the logits' norm, 1e-3 in float32 and 2e-2
    in 16-bit floats (two kernels in bf16 differ by ~1e-2). Attention that mixes samples or drops
    a window differs by ~1 (measured on the tiny model: 0.99)."""
    tolerance = 1e-3 if a.dtype == torch.float32 else 2e-2
    a, b = a.float(), b.float()
    return float((a - b).norm()) <= tolerance * float(a.norm()) + 1e-6
