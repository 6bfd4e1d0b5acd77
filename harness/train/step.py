"""One optimizer step over a step's examples, shared by the engine and the loss-dynamics analysis.

Micro-batches as the batching plan says, each backpropagating its summed token loss divided by
the step's total loss tokens (so accumulation and batching never change the gradient), plus an
auxiliary loss weighted by the micro-batch's share of loss tokens and a regulariser's penalty;
then clipping, AdamW and the learning-rate schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from harness.config.schema import TrainingConfig
from harness.data.templates import TokenizedExample
from harness.train.attention import BatchingPlan
from harness.train.batching import make_micro_batches
from harness.train.loss import summed_token_loss
from harness.train.schedule import make_scheduler


@dataclass(frozen=True)
class StepResult:
    summed_loss: float  # sum of token losses over the step
    n_loss_tokens: int
    n_real_tokens: int  # tokens that are not padding

    @property
    def mean_loss(self) -> float:
        return self.summed_loss / max(self.n_loss_tokens, 1)


class StepRunner:
    """The model's optimizer and schedule, and how to take one step with them."""

    def __init__(self, model: Any, training: TrainingConfig, plan: BatchingPlan, total_steps: int, pad_id: int,
                 device: torch.device, regularizer: Any = None, auxiliary: Any = None) -> None:
        self.model, self.training, self.plan, self.pad_id, self.device = model, training, plan, pad_id, device
        self.regularizer, self.auxiliary = regularizer, auxiliary
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        opt = training.optimizer
        self.optimizer = torch.optim.AdamW(self.trainable, lr=opt.lr, betas=opt.betas, eps=opt.eps,
                                           weight_decay=opt.weight_decay)
        self.scheduler = make_scheduler(self.optimizer, training, total_steps)
        self.micro = training.micro_batch_size or training.batch_size

    def step(self, examples: Sequence[TokenizedExample], step: int) -> StepResult:
        n_loss_tokens = sum(e.n_loss_tokens for e in examples)
        denominator = max(n_loss_tokens, 1)
        summed_total, real = 0.0, 0
        for batch in make_micro_batches(examples, self.plan.how, self.micro, self.training.max_seq_len,
                                        self.pad_id, self.plan.row_length):
            summed = summed_token_loss(self.model, batch, self.device)
            loss = summed / denominator
            if self.auxiliary is not None:
                aux = self.auxiliary.loss(self.model, step)
                if aux is not None:
                    loss = loss + aux * (batch.n_loss_tokens / denominator)
            loss.backward()
            summed_total += float(summed.detach())
            real += batch.n_real_tokens
        if self.regularizer is not None:
            self.regularizer.penalty(self.model, step).backward()
        if self.training.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.trainable, self.training.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepResult(summed_total, n_loss_tokens, real)
