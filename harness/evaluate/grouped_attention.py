"""Grouped-query attention without copying the cache, for several query tokens under a mask.

transformers' sdpa path runs a masked multi-token query on a grouped-query model (fewer key/value
heads than query heads, as Llama-style models have) by repeating every key/value head to the query
heads' count (`repeat_kv`): a copy of the whole cache per layer per forward, which dominates a
decode step that feeds draft tokens or a scoring forward over a cached few-shot preamble. Here the
query heads of a group are laid along the query axis instead (the mask repeated to match), so
each key/value head is read where it is: the same attention, the same numbers up to rounding.

Within `shared_prefix.attending_to`, every layer also attends to that shared prefix's one copy.

`grouped_sdpa()` installs it for the engines' own forwards only (lm-eval's path keeps transformers'
function) and restores the previous entry afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from harness.evaluate.shared_prefix import active_prefix, attend_with_prefix

_NAME = "sdpa"


@contextlib.contextmanager
def grouped_sdpa() -> Iterator[None]:
    """Within the block, the sdpa attention of every model takes the grouped path where it applies."""
    local = ALL_ATTENTION_FUNCTIONS._local_mapping
    had, previous = _NAME in local, local.get(_NAME)
    original = ALL_ATTENTION_FUNCTIONS[_NAME]

    def attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                  **kwargs: Any) -> tuple[torch.Tensor, None]:
        shared = active_prefix()
        if shared is not None:
            layer = getattr(module, "layer_idx", None)
            if (layer is None or dropout or attention_mask is not None and attention_mask.dim() != 4
                    or kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None):
                raise RuntimeError(f"{type(module).__name__}: this attention cannot attend to a shared "
                                   "prefix")
            return attend_with_prefix(shared, layer, query, key, value, attention_mask, scaling), None
        groups = int(getattr(module, "num_key_value_groups", 1) or 1)
        plain = (groups == 1 or query.shape[2] == 1 or attention_mask is None or attention_mask.dim() != 4
                 or attention_mask.shape[1] != 1 or attention_mask.shape[2] != query.shape[2]
                 or key.shape[1] * groups != query.shape[1] or dropout
                 or kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None)
        if plain:
            return original(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                            **kwargs)
        rows, heads, length, width = query.shape
        # Query head h uses key/value head h // groups: heads of one group become one longer query.
        grouped = query.reshape(rows, heads // groups, groups * length, width)
        mask = attention_mask.repeat(1, 1, groups, 1)
        out = F.scaled_dot_product_attention(grouped, key, value, attn_mask=mask, scale=scaling)
        return out.reshape(rows, heads, length, value.shape[-1]).transpose(1, 2).contiguous(), None

    ALL_ATTENTION_FUNCTIONS[_NAME] = attention
    try:
        yield
    finally:
        if had:
            ALL_ATTENTION_FUNCTIONS[_NAME] = previous
        else:
            del ALL_ATTENTION_FUNCTIONS[_NAME]
