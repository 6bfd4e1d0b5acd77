"""Which samples each optimizer step sees, and the learning-rate schedule.

The order is a seeded permutation per epoch, fixed before training starts, so a resumed run
sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import math
import random
from typing import Any

from harness.config.schema import TrainingConfig


def step_batches(n_examples: int, training: TrainingConfig, seed: int) -> list[list[int]]:
    """Indices of the examples of every optimizer step (the last batch of an epoch may be short)."""
    if n_examples == 0:
        raise ValueError("no training examples")
    per_epoch = math.ceil(n_examples / training.batch_size)
    total = training.max_steps or max(1, round(training.epochs * per_epoch))
    batches: list[list[int]] = []
    epoch = 0
    while len(batches) < total:
        order = list(range(n_examples))
        random.Random(f"{seed}:{epoch}").shuffle(order)
        batches.extend(order[i:i + training.batch_size] for i in range(0, n_examples, training.batch_size))
        epoch += 1
    return batches[:total]


def make_scheduler(optimizer: Any, training: TrainingConfig, total_steps: int) -> Any:
    """Linear warm-up, then cosine / linear decay to 0 (or constant)."""
    from transformers import get_scheduler

    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[training.scheduler.name]
    warmup = min(training.scheduler.warmup_steps, total_steps)
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
