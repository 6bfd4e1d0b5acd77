"""Several scoring items per forward row: a context and all its continuations in one row, rows packed.

An item is what one context needs scored after the cached prefix of its group: its suffix (the
context's tokens after the prefix, the last one included) and its segments (the distinct
continuation heads, continuation[:-1]). In a row an item's suffix comes first, then its segments
side by side; a 4-D mask lets the suffix attend causally to itself and each segment to the suffix
and itself only, and each segment's position ids restart where the suffix ends, so every token sees
exactly the keys and RoPE positions of an unpacked context + continuation. Several items share a
row (first-fit by length) and never see each other, so a forward carries almost no padding.

Only the positions whose next-token distribution is scored reach the output head (the last suffix
token, every segment token): on a small model the head over a 50k vocabulary costs a quarter of a
token's work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import DynamicCache

from harness.evaluate.cached_forward import CachedForward, RowCache


@dataclass
class ScoringItem:
    suffix: list[int]  # the context after the group's prefix, its last token included (non-empty)
    segments: list[list[int]]  # distinct non-empty continuation heads

    @property
    def length(self) -> int:
        return len(self.suffix) + sum(len(segment) for segment in self.segments)


@dataclass
class ItemLogits:
    """Logits of the scored positions of a forward's items, [kept, vocab], and where each item's are."""

    logits: torch.Tensor
    last: list[int]  # per item (in the order given): its last suffix token's logits row
    segments: list[list[int]]  # per item, per segment: the logits row of the segment's first token


def pack_items(lengths: Sequence[int], width: int) -> list[list[int]]:
    """Item indices per row, longest first, each row holding at most `width` tokens (first fit)."""
    rows: list[list[int]] = []
    free: list[int] = []
    for item in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        size = lengths[item]
        for row, room in enumerate(free):
            if size <= room:
                rows[row].append(item)
                free[row] -= size
                break
        else:
            rows.append([item])
            free.append(width - size)
    return rows


def run_items(forward: CachedForward, past: RowCache, rows: Sequence[Sequence[ScoringItem]]) -> ItemLogits:
    """One forward of `rows` (row i continuing row i of `past`); items are numbered row by row."""
    width = max(sum(item.length for item in row) for row in rows)
    ids = torch.full((len(rows), width), forward.pad_id, dtype=torch.long)
    item_of = torch.full((len(rows), width), -1, dtype=torch.long)  # -1: padding
    segment_of = torch.full((len(rows), width), -1, dtype=torch.long)  # -1: the item's suffix
    offset = torch.zeros((len(rows), width), dtype=torch.long)
    kept: list[int] = []
    last: list[int] = []
    segment_rows: list[list[int]] = []
    number = 0
    for r, row in enumerate(rows):
        at = 0
        for item in row:
            n = len(item.suffix)
            ids[r, at:at + n] = torch.tensor(item.suffix, dtype=torch.long)
            item_of[r, at:at + item.length] = number
            offset[r, at:at + n] = torch.arange(n)
            last.append(len(kept))
            kept.append(r * width + at + n - 1)
            at += n
            starts = []
            for k, segment in enumerate(item.segments):
                m = len(segment)
                ids[r, at:at + m] = torch.tensor(segment, dtype=torch.long)
                segment_of[r, at:at + m] = k
                offset[r, at:at + m] = torch.arange(n, n + m)
                starts.append(len(kept))
                kept.extend(range(r * width + at, r * width + at + m))
                at += m
            segment_rows.append(starts)
            number += 1
    device = forward.device
    mask = _block_mask(past, item_of.to(device), segment_of.to(device), forward.dtype)
    positions = past.next_position[:, None] + offset.to(device)
    keep = torch.tensor(kept, dtype=torch.long, device=device)
    cache = past.cache if past.cache is not None else DynamicCache()
    logits = forward_kept(forward, keep, input_ids=ids.to(device), attention_mask=mask,
                          position_ids=positions, past_key_values=cache, use_cache=True)
    return ItemLogits(logits, last, segment_rows)


def _block_mask(past: RowCache, item_of: torch.Tensor, segment_of: torch.Tensor,
                dtype: torch.dtype) -> torch.Tensor:
    """Additive mask [rows, 1, width, past + width]: the past where it is real, then the own item's
    suffix causally and the own segment causally; padding queries see themselves (never nothing)."""
    rows, width = item_of.shape
    index = torch.arange(width, device=item_of.device)
    same_item = (item_of[:, :, None] == item_of[:, None, :]) & (item_of[:, :, None] >= 0)
    causal = index[None, None, :] <= index[None, :, None]
    same_part = (segment_of[:, None, :] == -1) | (segment_of[:, None, :] == segment_of[:, :, None])
    itself = torch.eye(width, dtype=torch.bool, device=item_of.device)[None]
    allowed_new = (same_item & causal & same_part) | itself
    allowed_past = past.mask.bool()[:, None, :].expand(rows, width, past.length)
    allowed = torch.cat([allowed_past, allowed_new], dim=2)[:, None]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=item_of.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)


def forward_kept(forward: CachedForward, keep: torch.Tensor, **inputs: Any) -> torch.Tensor:
    """The model's logits [len(keep), vocab] at the flat positions `keep` (row * width + column).

    The output head sees only those positions (a pre-hook gathers its input); a model whose head
    is not a module called on the hidden states gets its full logits gathered afterwards.
    """
    model = forward.model
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    gathered: list[bool] = []

    def gather(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        hidden = args[0]
        if gathered or hidden.dim() != 3:
            return args
        gathered.append(True)
        return (hidden.reshape(-1, hidden.shape[-1]).index_select(0, keep)[None], *args[1:])

    handle = head.register_forward_pre_hook(gather) if isinstance(head, torch.nn.Module) else None
    try:
        with forward.running():
            logits = model(**inputs).logits
    finally:
        if handle is not None:
            handle.remove()
    if gathered:
        return logits[0]
    return logits.reshape(-1, logits.shape[-1]).index_select(0, keep)
