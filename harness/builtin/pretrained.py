"""Pretrain the tiny Llama on the invented facts of `toy_facts`: `builtin:tiny-llama-pretrained`, a base
model that knows something (the facts `builtin:toy-knowledge` asks about), so that instruction tuning
has knowledge to cost.

Same architecture and tokenizer as `builtin:tiny-llama` (whose random weights are the starting point);
plain next-token training on packed documents. Deterministic for a given recipe on one machine: fixed
seeds, fixed data order and one torch thread while training (the thread count can change float sums).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.atomic import atomic_dir
from harness.builtin.pretrain_recipe import RECIPE, PretrainRecipe
from harness.builtin.tiny_model import build_tiny_llama
from harness.builtin.toy_facts import pretraining_documents, toy_facts


def _windows(token_ids: list[int], width: int) -> list[list[int]]:
    """The token stream cut into windows of `width` tokens (the model shifts labels itself)."""
    return [token_ids[i:i + width] for i in range(0, len(token_ids) - width + 1, width)]


def _lr_factor(recipe: PretrainRecipe, step: int) -> float:
    if step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    return max(0.0, (recipe.steps - step) / max(1, recipe.steps - recipe.warmup_steps))


def pretrain(model: Any, tokenizer: Any, recipe: PretrainRecipe = RECIPE) -> list[float]:
    """Train `model` in place on the fact corpus; return the loss of every step."""
    stream: list[int] = []
    for document in pretraining_documents(toy_facts(), seed=recipe.seed, rounds=recipe.rounds):
        stream += tokenizer(document)["input_ids"] + [tokenizer.eos_token_id]
    windows = _windows(stream, recipe.seq_len)
    order_rng = random.Random(recipe.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(recipe, step))
    losses: list[float] = []
    queue: list[int] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        for _ in range(recipe.steps):
            if len(queue) < recipe.batch_size:  # a fresh shuffled pass over the windows
                refill = list(range(len(windows)))
                order_rng.shuffle(refill)
                queue += refill
            batch = torch.tensor([windows[i] for i in queue[:recipe.batch_size]])
            del queue[:recipe.batch_size]
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach().item())
    finally:
        torch.set_num_threads(threads)
        model.eval()
    return losses


def build_tiny_llama_pretrained(out_dir: Path, recipe: PretrainRecipe = RECIPE) -> Path:
    """Write the pretrained tiny Llama (tokenizer, weights, generation config) to `out_dir`, atomically."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        start = build_tiny_llama(tmp / "init", seed=recipe.seed)
        tokenizer = AutoTokenizer.from_pretrained(start)
        model = AutoModelForCausalLM.from_pretrained(start)
        pretrain(model, tokenizer, recipe)
        model.save_pretrained(tmp, safe_serialization=True)
        for path in sorted(start.iterdir()):  # the tokenizer's files: the weights were saved above
            if not (tmp / path.name).exists():
                path.rename(tmp / path.name)
        shutil.rmtree(start)
    return out_dir
