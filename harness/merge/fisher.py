"""Diagonal empirical Fisher of a LoRA sub-model, for Fisher merging.

F = mean over the sub-model's own training samples of (∂ log p(response) / ∂W)², on the dense
weights W = W_base + sBA of the adapted modules (one backward per sample: the empirical Fisher
needs per-example squared gradients, not the square of a batch gradient). Cached per
(run, data, sample count).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from harness.atomic import atomic_dir
from harness.data.records import fingerprint
from harness.data.templates import tokenize_records
from harness.keys import content_key
from harness.merge.adapters import read_adapter
from harness.modeling import load_causal_lm, load_tokenizer, pick_device
from harness.paths import cache_dir
from harness.train.batching import make_micro_batches
from harness.train.loss import summed_token_loss


def lora_fisher(base_id: str, revision: str | None, adapter_dir: Path, records: Sequence[Any], *,
                template: str = "alpaca", max_seq_len: int = 1024, n_samples: int = 64) -> dict[str, torch.Tensor]:
    records = list(records)[:n_samples]
    key = content_key({"adapter": str(Path(adapter_dir).resolve()), "data": fingerprint(records),
                       "template": template, "max_seq_len": max_seq_len})
    cached = cache_dir() / "fisher" / key / "fisher.safetensors"
    if cached.is_file():
        return load_file(str(cached))
    from peft import PeftModel

    device = pick_device()
    tokenizer = load_tokenizer(base_id, revision)
    model = PeftModel.from_pretrained(load_causal_lm(base_id, revision, "float32", device), str(adapter_dir))
    model = model.merge_and_unload().eval()
    adapted = set(read_adapter(adapter_dir).modules)
    params = {name: p for name, p in model.named_parameters() if name in adapted}
    for name, p in model.named_parameters():
        p.requires_grad_(name in params)
    fisher = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    examples = tokenize_records(records, tokenizer, template, max_seq_len).examples
    for example in examples:
        (batch,) = make_micro_batches([example], "padded", 1, max_seq_len, tokenizer.pad_token_id)
        model.zero_grad(set_to_none=True)
        summed_token_loss(model, batch, device).backward()  # = -log p(response | prompt)
        for name, p in params.items():
            fisher[name] += p.grad.detach().float() ** 2
    fisher = {name: (f / max(len(examples), 1)).cpu() for name, f in fisher.items()}
    with atomic_dir(cached.parent) as tmp:
        save_file(fisher, str(tmp / cached.name))
    return fisher
