"""Token losses. The step loss is the sum of token losses over the whole effective batch
divided by the number of loss tokens in it (per token across the effective batch, as HF
Trainer does with `num_items_in_batch`), so gradient accumulation and batching do not change it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from harness.data.templates import IGNORE_INDEX, TokenizedExample
from harness.train.batching import MicroBatch, make_micro_batches


def summed_token_loss(model: Any, batch: MicroBatch, device: torch.device) -> torch.Tensor:
    """Sum of cross-entropy over the batch's loss tokens (targets are pre-shifted).

    The output head runs only on positions that carry a loss (responses, not prompts or
    padding): with a large vocabulary the head and its softmax are a big share of the work.
    """
    targets = batch.targets.to(device)
    causal_lm = plain_causal_lm(model)
    if causal_lm is None:
        logits = model(**batch.model_inputs(device), use_cache=False).logits
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=IGNORE_INDEX, reduction="sum")
    keep = targets != IGNORE_INDEX
    hidden = causal_lm.get_decoder()(**batch.model_inputs(device), use_cache=False).last_hidden_state
    logits = causal_lm.get_output_embeddings()(hidden[keep])
    return F.cross_entropy(logits.float(), targets[keep], reduction="sum")


def plain_causal_lm(model: Any) -> Any:
    """The *ForCausalLM under a peft wrapper whose logits are just head(hidden), else None."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(inner, "config", None)
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return None  # models that transform logits after the head go through their own forward
    if not (hasattr(inner, "get_decoder") and hasattr(inner, "get_output_embeddings")):
        return None
    if inner.get_output_embeddings() is None:
        return None
    return inner


@torch.no_grad()
def mean_token_loss(model: Any, examples: Sequence[TokenizedExample], device: torch.device, pad_id: int,
                    max_seq_len: int, micro_batch_size: int = 8) -> float:
    """Mean loss per loss token over `examples` (evaluation mode: dropout off)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in make_micro_batches(examples, "grouped", micro_batch_size, max_seq_len, pad_id):
        total += float(summed_token_loss(model, batch, device))
        count += batch.n_loss_tokens
    model.train(was_training)
    return total / max(count, 1)
