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
from harness.fisher import empirical_fisher
from harness.keys import content_key
from harness.merge.adapters import read_adapter
from harness.modeling import load_causal_lm, load_tokenizer, pick_device
from harness.paths import cache_dir


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
    model = model.merge_and_unload()
    examples = tokenize_records(records, tokenizer, template, max_seq_len).examples
    fisher = empirical_fisher(model, examples, read_adapter(adapter_dir).modules, device, tokenizer.pad_token_id,
                              max_seq_len)
    with atomic_dir(cached.parent) as tmp:
        save_file(fisher, str(tmp / cached.name))
    return fisher
