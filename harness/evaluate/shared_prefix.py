"""One copy of a prefix's keys/values for every row that continues it (cascade attention).

The generator's rows all continue one few-shot preamble (GSM8K's 8-shot CoT: ~800 tokens before a
~100-token question). With the preamble's keys/values copied into every row, a decode step reads them
once per row: at 16 rows on a CPU that is more memory traffic than the weights, and attention took
half of each step. Here the rows' caches hold only their own positions; each layer scores all rows'
queries against the prefix's one copy in a single matmul, and each row's queries against its own
keys, and takes one softmax over both: the attention over the concatenated keys, up to rounding.
The prefix needs no mask: it comes before every position of every row.

`attending_to(shared)` makes a forward's sdpa attention (`grouped_attention`) take this path; it
counts the layers that read the prefix, so a model whose attention bypasses that hook is caught
(`CachedForward` raises) instead of silently attending to the rows' own positions only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch

# Largest score matrix (elements) one pass builds; more rows are attended in chunks. A prefill of 16
# questions of ~300 tokens after an 800-token preamble would otherwise build ~190 MB per layer.
SCORE_ELEMENTS = 1 << 24


@dataclass
class SharedPrefix:
    """Per layer, the prefix's keys and values [1, kv_heads, length, head_dim]."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    reads: int = field(default=0, compare=False)  # layers that attended to it in the current forward

    @property
    def length(self) -> int:
        return int(self.keys[0].shape[-2]) if self.keys else 0

    @classmethod
    def from_cache(cls, cache: object) -> SharedPrefix:
        """The single row of a cache (`DynamicCache`-like: `.layers` with `.keys`/`.values`)."""
        layers = cache.layers  # type: ignore[attr-defined]
        assert all(layer.keys.shape[0] == 1 for layer in layers), "a shared prefix is one row"
        return cls([layer.keys for layer in layers], [layer.values for layer in layers])


_ACTIVE: ContextVar[SharedPrefix | None] = ContextVar("atax_shared_prefix", default=None)


@contextlib.contextmanager
def attending_to(shared: SharedPrefix | None) -> Iterator[None]:
    """Within the block, sdpa attention also attends to `shared` (None: nothing changes)."""
    if shared is not None:
        shared.reads = 0
    token = _ACTIVE.set(shared)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active_prefix() -> SharedPrefix | None:
    return _ACTIVE.get()


def attend_with_prefix(shared: SharedPrefix, layer: int, query: torch.Tensor, key: torch.Tensor,
                       value: torch.Tensor, mask: torch.Tensor | None, scaling: float | None) -> torch.Tensor:
    """Attention of `query` [rows, heads, q, d] over the prefix then the rows' own `key`/`value`
    [rows, kv_heads, own, d] (`mask` [rows, 1, q, own], bool or additive, for the own part only).
    Returns [rows, q, heads, d], the layout transformers' attention functions return."""
    shared.reads += 1
    rows, heads, q, _ = query.shape
    if mask is None and q > 1:  # transformers left causality to the kernel (is_causal): spell it out
        own = key.shape[-2]
        positions = torch.arange(own, device=key.device)
        mask = (positions[None, :] <= torch.arange(q, device=key.device)[:, None] + (own - q))[None, None]
    if mask is not None:
        mask = mask.expand(rows, -1, q, -1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    per_row = heads * q * (shared.length + key.shape[-2])
    step = max(1, SCORE_ELEMENTS // max(per_row, 1))
    parts = [_attend(shared.keys[layer], shared.values[layer], query[i:i + step], key[i:i + step],
                     value[i:i + step], None if mask is None else mask[i:i + step], scale)
             for i in range(0, rows, step)]
    out = parts[0] if len(parts) == 1 else torch.cat(parts)
    return out.transpose(1, 2).contiguous()


def _attend(prefix_keys: torch.Tensor, prefix_values: torch.Tensor, query: torch.Tensor, key: torch.Tensor,
            value: torch.Tensor, mask: torch.Tensor | None, scale: float) -> torch.Tensor:
    rows, heads, q, width = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    prefix = prefix_keys.shape[-2]
    # Query head h uses key/value head h // groups: a group's heads become one longer query.
    grouped = query.reshape(rows, kv_heads, groups * q, width)
    # Every row's queries against the prefix at once: [kv_heads, rows * groups * q, prefix].
    stacked = grouped.transpose(0, 1).reshape(kv_heads, rows * groups * q, width)
    prefix_scores = torch.matmul(stacked, prefix_keys[0].transpose(-1, -2)) * scale
    prefix_scores = prefix_scores.reshape(kv_heads, rows, groups * q, prefix).transpose(0, 1)
    own_scores = torch.matmul(grouped, key.transpose(-1, -2)) * scale
    if mask is not None:
        mask = mask.repeat(1, 1, groups, 1)  # the mask of query t, for each head of the group
        bool_mask = mask.dtype == torch.bool
        own_scores = own_scores.masked_fill(~mask, float("-inf")) if bool_mask else own_scores + mask
    probs = torch.softmax(torch.cat([prefix_scores, own_scores], dim=-1).float(), dim=-1).to(value.dtype)
    out = torch.matmul(probs[..., prefix:], value)
    on_prefix = probs[..., :prefix].transpose(0, 1).reshape(kv_heads, rows * groups * q, prefix)
    out += torch.matmul(on_prefix, prefix_values[0]).reshape(kv_heads, rows, groups * q, -1).transpose(0, 1)
    return out.reshape(rows, heads, q, value.shape[-1])
