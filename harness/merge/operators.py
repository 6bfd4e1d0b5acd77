"""Merge operators: pure functions over the versions of ONE parameter.

`op(tensors, base=None, weights=None, **params) -> tensor`: `tensors` are the sub-models'
values θᵢ of a parameter, `base` the pre-trained θ_base (None: zeros, i.e. `tensors` are task
vectors δᵢ), `weights` the αᵢ (default uniform). Each operator works on δᵢ = θᵢ − θ_base and
returns θ_base + (merged δ). Random operators take `seed` (the streaming merger derives one
per parameter name, so results do not depend on the order tensors are visited).

Exact rules, and where they differ from mergekit / peft:
- average:          Σ αᵢ δᵢ. αᵢ ≥ 0 summing to 1.
- task_arithmetic:  λ Σ αᵢ δᵢ, with αᵢ = 1 by default (Ilharco et al.); λ = `scale`.
- ties:             trim each δᵢ to its top `density` fraction by |δ| (per tensor), elect the
                    sign of Σ αᵢ δ̂ᵢ (weighted, as mergekit; the TIES paper sums unweighted),
                    then the weighted mean of the entries that agree with it (disjoint mean),
                    times λ. Weights need not sum to 1 (the mean normalises).
- dare:             drop each entry with probability `p`, rescale kept ones by 1/(1−p), then
                    task arithmetic. (mergekit can instead rescale to match the L1 norm.)
- dare_ties:        DARE's random drop and rescale, then TIES' sign election and disjoint mean.
- fisher:           Σ αᵢFᵢθᵢ / Σ αᵢFᵢ elementwise, Fᵢ floored at `floor` (Matena & Raffel);
                    `fishers` gives the diagonal Fisher of each sub-model.
- parameter_selection: every entry taken from one sub-model drawn with probability αᵢ (Ju et
                    al., EMNLP 2024); with `resample=True` an entry equal to the base is redrawn
                    among the sub-models whose entry differs from the base (∝ αᵢ), so a base
                    value survives only where every sub-model kept it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Tensors = Sequence[torch.Tensor]


def check_weights(weights: Sequence[float] | None, n: int, *, default: float | None = None,
                  must_sum_to_one: bool = True) -> list[float]:
    """Validate αᵢ: one per model, ≥ 0, summing to 1 where the operator needs it."""
    if weights is None:
        return [default if default is not None else 1.0 / n] * n
    weights = [float(w) for w in weights]
    if len(weights) != n:
        raise ValueError(f"weights: {len(weights)} given for {n} models; give one weight per model")
    if any(w < 0 for w in weights):
        raise ValueError(f"weights: must be >= 0 (got {weights})")
    if must_sum_to_one and abs(sum(weights) - 1.0) > 1e-6:
        raise ValueError(f"weights: must sum to 1 (got {sum(weights):g}); rescale them")
    return weights


def _deltas(tensors: Tensors, base: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    if not tensors:
        raise ValueError("no tensors to merge")
    stacked = torch.stack([t.float() for t in tensors])
    zero = torch.zeros_like(stacked[0])
    base_f = zero if base is None else base.float()
    return stacked - base_f, base_f


def _out(merged_delta: torch.Tensor, base: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return (base + merged_delta).to(like.dtype)


def _weighted_sum(deltas: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    w = torch.tensor(weights, dtype=deltas.dtype).view(-1, *([1] * (deltas.dim() - 1)))
    return (w * deltas).sum(0)


def average(tensors: Tensors, base: torch.Tensor | None = None, weights: Sequence[float] | None = None,
            **_: object) -> torch.Tensor:
    deltas, base_f = _deltas(tensors, base)
    return _out(_weighted_sum(deltas, check_weights(weights, len(tensors))), base_f, tensors[0])


def task_arithmetic(tensors: Tensors, base: torch.Tensor | None = None, weights: Sequence[float] | None = None,
                    scale: float = 1.0, **_: object) -> torch.Tensor:
    deltas, base_f = _deltas(tensors, base)
    w = check_weights(weights, len(tensors), default=1.0, must_sum_to_one=False)
    return _out(scale * _weighted_sum(deltas, w), base_f, tensors[0])


def magnitude_threshold(delta: torch.Tensor, density: float) -> float:
    """The |δ| of the k-th largest entry, k = round(density · n): TIES keeps entries at or above it."""
    flat = delta.detach().abs().reshape(-1).float()
    k = max(1, int(round(density * flat.numel())))
    return float(flat.kthvalue(flat.numel() - k + 1).values)


def _trim_magnitude(deltas: torch.Tensor, density: float, thresholds: Sequence[float] | None) -> torch.Tensor:
    """Keep the top `density` fraction of each δᵢ by magnitude (ties at the threshold kept).

    `thresholds` lets a caller that streams a tensor in chunks pass the whole-tensor thresholds.
    """
    if density >= 1.0:
        return deltas
    if thresholds is None:
        thresholds = [magnitude_threshold(d, density) for d in deltas]
    limit = torch.tensor(thresholds, dtype=deltas.dtype).view(-1, *([1] * (deltas.dim() - 1)))
    return deltas * (deltas.abs() >= limit)


def _drop_random(deltas: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    if p <= 0.0:
        return deltas
    if p >= 1.0:
        raise ValueError(f"p: must be < 1 (got {p})")
    generator = torch.Generator().manual_seed(int(seed))
    keep = torch.rand(deltas.shape, generator=generator) >= p
    return deltas * keep / (1.0 - p)


def _sign_consensus_mean(deltas: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    w = torch.tensor(weights, dtype=deltas.dtype).view(-1, *([1] * (deltas.dim() - 1)))
    elected = torch.sign((w * deltas).sum(0))
    agree = (torch.sign(deltas) == elected) & (deltas != 0)
    weight_sum = (w * agree).sum(0)
    return torch.where(weight_sum > 0, (w * deltas * agree).sum(0) / weight_sum.clamp_min(1e-12),
                       torch.zeros_like(elected))


def _sparse_merge(tensors: Tensors, base: torch.Tensor | None, weights: Sequence[float] | None, *,
                  sparsify: str | None, consensus: bool, density: float = 1.0, p: float = 0.0,
                  scale: float = 1.0, seed: int = 0, thresholds: Sequence[float] | None = None) -> torch.Tensor:
    """TIES, DARE and their mixes are one algorithm: optional sparsification, optional sign consensus."""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density: must be in (0, 1] (got {density})")
    deltas, base_f = _deltas(tensors, base)
    w = check_weights(weights, len(tensors), default=1.0, must_sum_to_one=False)
    if sparsify == "magnitude":
        deltas = _trim_magnitude(deltas, density, thresholds)
    elif sparsify == "random":
        deltas = _drop_random(deltas, p, seed)
    merged = _sign_consensus_mean(deltas, w) if consensus else _weighted_sum(deltas, w)
    return _out(scale * merged, base_f, tensors[0])


def ties(tensors: Tensors, base: torch.Tensor | None = None, weights: Sequence[float] | None = None,
         density: float = 0.2, scale: float = 1.0, thresholds: Sequence[float] | None = None,
         **_: object) -> torch.Tensor:
    return _sparse_merge(tensors, base, weights, sparsify="magnitude", consensus=True, density=density, scale=scale,
                         thresholds=thresholds)



def dare(tensors: Tensors, base: torch.Tensor | None = None, weights: Sequence[float] | None = None,
         p: float = 0.5, scale: float = 1.0, seed: int = 0, **_: object) -> torch.Tensor:
    return _sparse_merge(tensors, base, weights, sparsify="random", consensus=False, p=p, scale=scale, seed=seed)


def dare_ties(tensors: Tensors, base: torch.Tensor | None = None, weights: Sequence[float] | None = None,
              p: float = 0.5, scale: float = 1.0, seed: int = 0, **_: object) -> torch.Tensor:
    return _sparse_merge(tensors, base, weights, sparsify="random", consensus=True, p=p, scale=scale, seed=seed)


def fisher(tensors: Tensors, base: torch.Tensor | None = None, weights: Sequence[float] | None = None,
           fishers: Tensors | None = None, floor: float = 1e-8, **_: object) -> torch.Tensor:
    if fishers is None or len(fishers) != len(tensors):
        raise ValueError("fisher: give one Fisher tensor per model (fishers=[...])")
    w = check_weights(weights, len(tensors))
    thetas = torch.stack([t.float() for t in tensors])
    f = torch.stack([x.float().clamp_min(floor) for x in fishers])
    wv = torch.tensor(w).view(-1, *([1] * (thetas.dim() - 1)))
    return ((wv * f * thetas).sum(0) / (wv * f).sum(0)).to(tensors[0].dtype)


def parameter_selection(tensors: Tensors, base: torch.Tensor | None = None, weights: Sequence[float] | None = None,
                        resample: bool = True, seed: int = 0, **_: object) -> torch.Tensor:
    deltas, base_f = _deltas(tensors, base)
    w = torch.tensor(check_weights(weights, len(tensors)), dtype=torch.float32).view(-1, *([1] * (deltas.dim() - 1)))
    candidates = w.expand_as(deltas)
    if resample:
        # Draw only among sub-models whose entry differs from the base; all-base entries stay base.
        differs = (deltas != 0).to(torch.float32) * w
        candidates = torch.where(differs.sum(0, keepdim=True) > 0, differs, candidates)
    # Inverse-CDF sampling along the model axis: memory of one more stack, unlike multinomial.
    cumulative = candidates.cumsum(0)
    generator = torch.Generator().manual_seed(int(seed))
    u = torch.rand(deltas.shape[1:], generator=generator) * cumulative[-1]
    choice = (cumulative <= u.unsqueeze(0)).sum(0).clamp_max(len(tensors) - 1)
    picked = deltas.gather(0, choice.unsqueeze(0)).squeeze(0)
    return _out(picked, base_f, tensors[0])

