"""The loss-dynamics study (the DTM paper's Section 3, Figures 4-6) as one continuous training run.

The instruction data is split at random into P equal portions; the last is held out as the
validation portion and the model (LoRA, the experiment's training protocol) is trained on the
other P-1, one portion after another, with one optimizer and one learning-rate schedule over all
of them. Before training and after each portion the per-token losses are measured on a fixed
sample of the training set and on the validation portion. `dynamics_report` turns the
measurements into series, figures and a summary; the definitions are in the README ("The pilot
study") and in `token_stats`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.analyze.token_stats import DEFAULT_RATIO_EPS, TokenLosses, token_losses
from harness.config import BaseModelConfig, Experiment, TrainingConfig
from harness.data.templates import TokenizedExample
from harness.errors import UserError
from harness.progress import Progress, QuietProgress

ANALYSIS_VERSION = "1"  # bump when a change alters what the study produces: part of its key


@dataclass(frozen=True)
class DynamicsOptions:
    portions: int = 10
    train_sample: int | None = None  # examples in the fixed training sample; None: as many as validation
    min_count: int = 5  # occurrences a token type needs on both sides to enter ρ (and the top lists)
    top_k: int = 20  # representative tokens listed per stage
    ratio_eps: float = DEFAULT_RATIO_EPS
    seed: int = 0

    def check(self) -> None:
        if self.portions < 3:
            raise UserError(f"--portions: must be at least 3 (one validation portion and at least two training "
                            f"portions to compare); got {self.portions}")
        if self.train_sample is not None and self.train_sample < 1:
            raise UserError(f"--train-sample: must be at least 1; got {self.train_sample}")
        if self.min_count < 1:
            raise UserError(f"--min-count: must be at least 1; got {self.min_count}")
        if self.top_k < 1:
            raise UserError(f"--top-k: must be at least 1; got {self.top_k}")
        if not self.ratio_eps > 0:
            raise UserError(f"--ratio-eps: must be > 0; got {self.ratio_eps}")


@dataclass(frozen=True)
class PortionSplit:
    training: list[list[TokenizedExample]]  # P-1 portions, trained in this order
    validation: list[TokenizedExample]  # the held-out portion
    sample: list[TokenizedExample]  # the fixed sample of the training set that L_train is measured on


def split_portions(examples: Sequence[TokenizedExample], portions: int, seed: int,
                   sample_size: int | None = None) -> PortionSplit:
    """A seeded permutation cut into `portions` parts whose sizes differ by at most one; the last is
    the validation portion. The training sample is drawn once, uniformly without replacement, from
    the union of the training portions (all of it when `sample_size` is at least its size)."""
    n = len(examples)
    if n < portions:
        raise UserError(f"--portions: {portions} portions need at least {portions} examples; the data has {n} "
                        "that fit max_seq_len")
    order = list(range(n))
    random.Random(f"loss-dynamics:{seed}").shuffle(order)
    parts, start = [], 0
    for index in range(portions):
        size = n // portions + (1 if index < n % portions else 0)
        parts.append([examples[i] for i in order[start:start + size]])
        start += size
    training, validation = parts[:-1], parts[-1]
    union = [e for part in training for e in part]
    wanted = len(validation) if sample_size is None else sample_size
    if wanted >= len(union):
        sample = list(union)
    else:
        picked = sorted(random.Random(f"loss-dynamics-sample:{seed}").sample(range(len(union)), wanted))
        sample = [union[i] for i in picked]
    return PortionSplit(training, validation, sample)


@dataclass(frozen=True)
class Measurement:
    portion: int  # training portions finished (0: before training)
    step: int  # optimizer steps so far
    tokens_seen: int  # training tokens (not padding) so far
    train: TokenLosses  # on the fixed training sample
    validation: TokenLosses  # on the validation portion


def train_and_measure(base_model: BaseModelConfig, training: TrainingConfig, split: PortionSplit, tokenizer: Any,
                      seed: int, progress: Progress | None = None) -> list[Measurement]:
    """Train on split.training portion after portion (one pass each, one optimizer and one schedule
    over the whole run) and measure before training and after each portion."""
    import torch

    from harness import registry
    from harness.method import RunSpec
    from harness.modeling import load_causal_lm, pick_device
    from harness.paths import cache_dir
    from harness.train.attention import plan_batching
    from harness.train.cpu_memory import keep_freed_memory
    from harness.train.hooks import TrainContext, build_hook
    from harness.train.step import StepRunner

    progress = progress or QuietProgress()
    device = pick_device()
    keep_freed_memory(device)
    run = RunSpec(name="loss-dynamics", seed=seed)
    ctx = TrainContext(base_model.id, base_model.revision, training, run, seed, device, tokenizer, cache_dir())
    torch.manual_seed(seed)
    model = load_causal_lm(base_model.id, base_model.revision, base_model.dtype, device)
    batching = plan_batching(model, training.batching, device, len(tokenizer), training.max_seq_len)
    model = build_hook(registry.adapters, run.adapter, ctx).wrap(model, ctx)
    if training.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()

    # Each portion is seen once, in a seeded order of its own; the schedule spans every portion.
    plan = []
    for index, portion in enumerate(split.training):
        order = list(range(len(portion)))
        random.Random(f"{seed}:portion{index}").shuffle(order)
        plan.append([[portion[i] for i in order[s:s + training.batch_size]]
                     for s in range(0, len(order), training.batch_size)])
    total = sum(len(steps) for steps in plan)
    pad_id = tokenizer.pad_token_id
    runner = StepRunner(model, training, batching, total, pad_id, device)

    def measure(portion: int, step: int, tokens: int) -> Measurement:
        return Measurement(portion, step, tokens,
                           token_losses(model, split.sample, device, pad_id, training.max_seq_len),
                           token_losses(model, split.validation, device, pad_id, training.max_seq_len))

    measurements = [measure(0, 0, 0)]
    step, tokens = 0, 0
    model.train()
    progress.start(f"loss dynamics: {len(split.training)} portions", total=total)
    for index, steps in enumerate(plan):
        for examples in steps:
            result = runner.step(examples, step)  # the engine's own step
            tokens += result.n_real_tokens
            step += 1
            progress.update(step, loss=f"{result.mean_loss:.4f}")
        measurements.append(measure(index + 1, step, tokens))
    progress.finish()
    return measurements


@dataclass(frozen=True)
class DynamicsRun:
    measurements: list[Measurement]
    split: PortionSplit
    tokenizer: Any
    n_examples: int  # examples that fit max_seq_len (before the split)
    n_prompt_too_long: int


def run_loss_dynamics(experiment: Experiment, options: DynamicsOptions,
                      progress: Progress | None = None) -> DynamicsRun:
    """Load and tokenise the experiment's data (its subset selection applies), split it, train, measure."""
    from harness.data import load_instruction_data
    from harness.data.templates import tokenize_records
    from harness.modeling import load_tokenizer

    options.check()
    training = experiment.training
    tokenizer = load_tokenizer(experiment.base_model.id, experiment.base_model.revision)
    records = load_instruction_data(experiment.data).records
    data = tokenize_records(records, tokenizer, training.template, training.max_seq_len, training.loss_on)
    split = split_portions(data.examples, options.portions, options.seed, options.train_sample)
    measurements = train_and_measure(experiment.base_model, training, split, tokenizer, options.seed, progress)
    return DynamicsRun(measurements, split, tokenizer, len(data.examples), data.n_prompt_too_long)
