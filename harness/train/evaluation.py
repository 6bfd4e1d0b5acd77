"""Loss of a finished checkpoint on held-out records (greedy soups, validation of merges)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.checkpoint import Checkpoint


def checkpoint_loss(checkpoint: Checkpoint, records: Sequence[Any], template: str, max_seq_len: int) -> float:
    """Mean token loss of a LoRA or dense checkpoint on `records`."""
    from harness.data.templates import tokenize_records
    from harness.modeling import load_causal_lm, load_tokenizer, pick_device
    from harness.train.loss import mean_token_loss

    base = checkpoint.base_model
    device = pick_device()
    tokenizer = load_tokenizer(checkpoint.require_base_id(), base.revision)
    if checkpoint.kind == "lora":
        from peft import PeftModel

        base_lm = load_causal_lm(checkpoint.require_base_id(), base.revision, "auto", device)
        model = PeftModel.from_pretrained(base_lm, str(checkpoint.path))
    elif checkpoint.kind == "dense":
        model = load_causal_lm(str(checkpoint.path), None, "auto", device)
    else:
        raise ValueError(f"{checkpoint.path}: cannot compute a loss for kind {checkpoint.kind}")
    examples = tokenize_records(list(records), tokenizer, template, max_seq_len).examples  # type: ignore[arg-type]
    return mean_token_loss(model, examples, device, tokenizer.pad_token_id, max_seq_len)
