"""Per-token losses and what the loss-dynamics study computes from them: the mean loss, the
guarded train/validation reduction ratio, per-token-type reductions, their Spearman correlation and
the token types whose loss fell most. Everything but `token_losses` is plain numpy, so the
definitions are pinned by tests on constructed numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.data.templates import IGNORE_INDEX, TokenizedExample
from harness.train.batching import make_micro_batches

DEFAULT_RATIO_EPS = 1e-4  # nats: below this |ΔL_val| the ratio is reported as null


@dataclass(frozen=True)
class TokenLosses:
    """Every loss position of a fixed set of examples, in a fixed order: its target token and loss."""

    token_ids: np.ndarray  # int64 [n]
    losses: np.ndarray  # float64 [n], nats

    @property
    def mean(self) -> float:
        """The mean token loss: sum over loss positions / their number (as the engine's validation loss)."""
        return float(self.losses.mean()) if self.losses.size else float("nan")


def token_losses(model: Any, examples: Sequence[TokenizedExample], device: Any, pad_id: int, max_seq_len: int,
                 micro_batch_size: int = 8) -> TokenLosses:
    """Per-position cross-entropy of every loss token of `examples` (eval mode: dropout off).

    The order depends only on `examples` (length-grouped, stable), so measuring the same examples
    twice gives position-aligned arrays: that is what makes a per-occurrence difference meaningful.
    """
    import torch
    import torch.nn.functional as F

    # The engine's trick: run the output head only where a loss is taken (big vocabularies).
    from harness.train.loss import plain_causal_lm

    was_training = model.training
    model.eval()
    ids, losses = [], []
    with torch.no_grad():
        for batch in make_micro_batches(examples, "grouped", micro_batch_size, max_seq_len, pad_id):
            targets = batch.targets.to(device)
            keep = targets != IGNORE_INDEX
            causal_lm = plain_causal_lm(model)
            if causal_lm is None:
                logits = model(**batch.model_inputs(device), use_cache=False).logits[keep]
            else:
                hidden = causal_lm.get_decoder()(**batch.model_inputs(device), use_cache=False).last_hidden_state
                logits = causal_lm.get_output_embeddings()(hidden[keep])
            losses.append(F.cross_entropy(logits.float(), targets[keep], reduction="none").double().cpu())
            ids.append(targets[keep].cpu())
    model.train(was_training)
    if not ids:
        return TokenLosses(np.zeros(0, dtype=np.int64), np.zeros(0))
    return TokenLosses(torch.cat(ids).numpy().astype(np.int64), torch.cat(losses).numpy())


def loss_ratio(delta_train: float, delta_val: float, eps: float = DEFAULT_RATIO_EPS) -> float | None:
    """ΔL_train / ΔL_val; None (reported as null, flagged) when |ΔL_val| < eps, where it means nothing."""
    return None if abs(delta_val) < eps else delta_train / delta_val


@dataclass(frozen=True)
class TokenReductions:
    """Per token type t: its occurrences in a fixed sample, and the mean loss reduction over them."""

    counts: dict[int, int]
    reduction: dict[int, float]


def per_token_reduction(before: TokenLosses, after: TokenLosses) -> TokenReductions:
    """r(t) = mean over the sample's loss positions whose target is t of (loss before - loss after).

    `before` and `after` must measure the same examples (same positions, same targets).
    """
    if not np.array_equal(before.token_ids, after.token_ids):
        raise ValueError("per_token_reduction: the two measurements are not of the same token positions")
    if before.token_ids.size == 0:
        return TokenReductions({}, {})
    size = int(before.token_ids.max()) + 1
    counts = np.bincount(before.token_ids, minlength=size)
    sums = np.bincount(before.token_ids, weights=before.losses - after.losses, minlength=size)
    present = np.nonzero(counts)[0]
    return TokenReductions({int(t): int(counts[t]) for t in present},
                           {int(t): float(sums[t] / counts[t]) for t in present})


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's ρ: Pearson's r of average ranks (ties share their mean rank); None when undefined
    (fewer than 3 pairs, or one side constant)."""
    from scipy.stats import rankdata

    if len(x) != len(y):
        raise ValueError(f"spearman: {len(x)} and {len(y)} values")
    if len(x) < 3:
        return None
    rx, ry = rankdata(np.asarray(x, dtype=float)), rankdata(np.asarray(y, dtype=float))
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def shared_types(train: TokenReductions, val: TokenReductions, min_count: int) -> list[int]:
    """Token types occurring at least `min_count` times in the training sample and in the validation
    portion; a type seen on one side only never enters ρ."""
    return sorted(t for t, n in train.counts.items() if n >= min_count and val.counts.get(t, 0) >= min_count)


def token_correlation(train: TokenReductions, val: TokenReductions, min_count: int) -> tuple[float | None, int]:
    """(ρ between per-token train and validation reductions over the shared types, number of types)."""
    types = shared_types(train, val, min_count)
    return spearman([train.reduction[t] for t in types], [val.reduction[t] for t in types]), len(types)


def top_reductions(reductions: TokenReductions, min_count: int, k: int) -> list[tuple[int, float, int]]:
    """(token id, reduction, count) of the k types with the largest reduction (ties: smaller id first)."""
    eligible = [(t, r, reductions.counts[t]) for t, r in reductions.reduction.items()
                if reductions.counts[t] >= min_count]
    return sorted(eligible, key=lambda item: (-item[1], item[0]))[:k]
