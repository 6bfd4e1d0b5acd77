"""Several scoring items per forward row: a context and all its continuations in one row, rows packed.

An item is what one context needs scored after the cached prefix of its group: its suffix (the
context's tokens after the prefix, the last one included) and its segments (the distinct
continuation heads, continuation[:-1]). The segments are laid out as a trie: a token shared by
several heads at the same depth (the " The" of " The sun" and " The moon") is run once. In a row an
item's suffix comes first, then its trie in depth-first order; a 4-D mask lets every token attend to
its ancestors only (the suffix causally, a trie node to the suffix and the nodes on its path), and
a node's position id is the suffix length plus its depth, so every token sees exactly the keys and
RoPE positions of an unpacked context + continuation. Depth-first order makes "ancestor" an
interval test: k is an ancestor of q when k <= q < end(k), end(k) being where k's subtree ends.
Several items share a row (first-fit by length) and never see each other, so a forward carries
almost no padding.

Only the positions whose next-token distribution is scored reach the output head (the last suffix
token, every trie node): on a small model the head over a 50k vocabulary costs a quarter of a
token's work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import DynamicCache

from harness.evaluate.cached_forward import CachedForward, RowCache


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class SegmentTrie:
    """Distinct token sequences as a trie in depth-first order: per node its token, depth and subtree
    end (exclusive node index); per sequence the nodes of its tokens."""

    tokens: list[int]
    depths: list[int]
    ends: list[int]
    paths: list[list[int]]

    @classmethod
    def of(cls, segments: Sequence[Sequence[int]]) -> SegmentTrie:
        # Sorted sequences visit the trie depth-first: each one adds the nodes past what it shares with
        # the one before, and closes the subtrees of the one before that it leaves.
        trie = cls([], [], [], [[] for _ in segments])
        open_path: list[int] = []
        previous: Sequence[int] = ()
        for k in sorted(range(len(segments)), key=lambda k: list(segments[k])):
            segment = segments[k]
            shared = common_length(previous, segment)
            for node in open_path[shared:]:
                trie.ends[node] = len(trie.tokens)
            del open_path[shared:]
            for depth in range(shared, len(segment)):
                open_path.append(len(trie.tokens))
                trie.tokens.append(int(segment[depth]))
                trie.depths.append(depth)
                trie.ends.append(-1)
            trie.paths[k] = list(open_path)
            previous = segment
        for node in open_path:
            trie.ends[node] = len(trie.tokens)
        return trie


@dataclass
class ScoringItem:
    suffix: list[int]  # the context after the group's prefix, its last token included (non-empty)
    segments: list[list[int]]  # distinct non-empty continuation heads

    def __post_init__(self) -> None:
        self.trie = SegmentTrie.of(self.segments)

    @property
    def length(self) -> int:
        return len(self.suffix) + len(self.trie.tokens)


@dataclass
class ItemLogits:
    """Logits of the scored positions of a forward's items, [kept, vocab], and where each item's are."""

    logits: torch.Tensor
    last: list[int]  # per item (in the order given): its last suffix token's logits row
    segments: list[list[list[int]]]  # per item, per segment: the logits row of each of its tokens


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
    ends = torch.full((len(rows), width), -1, dtype=torch.long)  # where each position's subtree ends
    offset = torch.zeros((len(rows), width), dtype=torch.long)
    kept: list[int] = []
    last: list[int] = []
    segment_rows: list[list[list[int]]] = []
    for r, row in enumerate(rows):
        at = 0
        for item in row:
            n, trie = len(item.suffix), item.trie
            ids[r, at:at + n] = torch.tensor(item.suffix, dtype=torch.long)
            ends[r, at:at + n] = at + item.length
            offset[r, at:at + n] = torch.arange(n)
            last.append(len(kept))
            kept.append(r * width + at + n - 1)
            at += n
            m = len(trie.tokens)
            if m:
                ids[r, at:at + m] = torch.tensor(trie.tokens, dtype=torch.long)
                ends[r, at:at + m] = torch.tensor(trie.ends, dtype=torch.long) + at
                offset[r, at:at + m] = torch.tensor(trie.depths, dtype=torch.long) + n
            first = len(kept)
            kept.extend(range(r * width + at, r * width + at + m))
            segment_rows.append([[first + node for node in path] for path in trie.paths])
            at += m
    device = forward.device
    mask = _tree_mask(past, ends.to(device), forward.dtype)
    positions = past.next_position[:, None] + offset.to(device)
    keep = torch.tensor(kept, dtype=torch.long, device=device)
    cache = past.cache if past.cache is not None else DynamicCache()
    logits = forward_kept(forward, keep, input_ids=ids.to(device), attention_mask=mask,
                          position_ids=positions, past_key_values=cache, use_cache=True)
    return ItemLogits(logits, last, segment_rows)


def _tree_mask(past: RowCache, ends: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask [rows, 1, width, past + width]: the past where it is real, then every key k with
    k <= query < ends[k] (its ancestors in the item's depth-first layout); padding (ends -1) queries
    see themselves (never nothing)."""
    rows, width = ends.shape
    index = torch.arange(width, device=ends.device)
    ancestor = (index[None, None, :] <= index[None, :, None]) & (index[None, :, None] < ends[:, None, :])
    allowed_new = ancestor | torch.eye(width, dtype=torch.bool, device=ends.device)[None]
    allowed_past = past.mask.bool()[:, None, :].expand(rows, width, past.length)
    allowed = torch.cat([allowed_past, allowed_new], dim=2)[:, None]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=ends.device)
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
