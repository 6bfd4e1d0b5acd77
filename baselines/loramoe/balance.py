"""The localized balancing constraint of LoRAMoE (Dou et al. 2023, Sec. 3.2), an auxiliary loss.

For each LoRA-MoE layer, with N experts and the M samples of the micro-batch:

    Q[m, n] = mean over sample m's tokens of the router weight of expert n   (importance)
    I[m, n] = 1 + delta if expert n belongs to the group of sample m's label, else 1 - delta
    Z       = I * Q   (element-wise)
    L_layer = Var(Z) / Mean(Z)^2   (squared coefficient of variation over all M*N entries)
    loss    = weight * sum over layers of L_layer

Experts 0..k-1 form the world-knowledge group and k..N-1 the downstream-task group,
k = knowledge_fraction * N rounded half up. Without labels (or with delta = 0) I = 1: plain per-sample
importance balancing. The loss is 0 exactly when Z is uniform, e.g. uniform routing with delta = 0.

Where this departs from the text, and why:
- Var / Mean^2, not the paper's Var / Mean: the authors' code uses the squared coefficient of
  variation and they confirmed it is the intended loss (Ablustrund/LoRAMoE issue #3).
- Q is the mean, not the sum, over a sample's tokens: with sums, samples of different lengths
  give a variance no routing can remove (so uniform routing would not score 0). For samples of
  equal length the two are the same loss, since Var / Mean^2 does not change with scale.
- Padding tokens do not count (the authors sum over padded positions, at batch size 1).
Note on the sign: minimising the dispersion of I * Q drives Q towards 1 / I, so a sample routes
somewhat *less* to the group weighted 1 + delta. The groups still specialise by label, which is
the point of the constraint; we keep the paper's definition of I rather than reinterpret it.

Which token belongs to which sample: the engine packs or pads micro-batches, so the adapter
installs a forward pre-hook on the decoder (`install_sample_recorder`) that derives a sample id
per token from the model inputs (packed rows: positions restart at 0 per sample; padded rows:
one sample per row, attention mask 0 = padding) and stores it on the model for this loss.
Labels: our training records carry no per-sample source, so a run's samples share the label of
its data source (the method maps source -> label); `localized_balance_loss` itself takes one
label per sample, ready for data that carries per-sample sources.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from baselines.loramoe.layer import LoraMoELinear
from harness.errors import UserError
from harness.method import MethodOptions

SAMPLE_INDEX_ATTR = "loramoe_sample_index"
LABELS = {"knowledge": 0, "task": 1}  # world-knowledge data, downstream-task data
_EPS = 1e-10  # as the authors' cv_squared


def knowledge_experts(n_experts: int, fraction: float) -> int:
    """Size of the world-knowledge group, fraction * N rounded half up, and at least one expert in
    each group when N >= 2 (Python's round() would send 1.5 and 2.5 both to 2)."""
    return min(max(math.floor(fraction * n_experts + 0.5), 1), max(n_experts - 1, 0))


def cv_squared(values: torch.Tensor) -> torch.Tensor:
    """Var / Mean^2 of all entries (unbiased variance, as torch.var and the authors' code)."""
    flat = values.flatten().float()
    if flat.numel() < 2:
        return flat.sum() * 0
    return flat.var() / (flat.mean() ** 2 + _EPS)


def localized_balance_loss(probs: torch.Tensor, samples: torch.Tensor, labels: torch.Tensor | None,
                           n_knowledge: int, delta: float) -> torch.Tensor:
    """L_layer for one layer.

    probs: router weights [..., N]; samples: sample id per token [...] (-1: padding, ignored);
    labels: one label (0 knowledge, 1 task) per sample id, or None for no labels.
    """
    n = probs.shape[-1]
    probs, samples = probs.reshape(-1, n).float(), samples.reshape(-1).to(probs.device)
    keep = samples >= 0
    if not bool(keep.any()):
        return probs.sum() * 0
    ids, column = torch.unique(samples[keep], return_inverse=True)
    sums = probs.new_zeros(len(ids), n).index_add(0, column, probs[keep])
    counts = torch.bincount(column, minlength=len(ids)).to(sums.dtype)
    importance = sums / counts[:, None]
    if labels is not None and delta != 0:
        group = (torch.arange(n, device=probs.device) >= n_knowledge).long()  # 0 knowledge, 1 task
        own = group[None, :] == labels.to(probs.device)[ids][:, None]
        importance = importance * torch.where(own, 1.0 + delta, 1.0 - delta)
    return cv_squared(importance)


def sample_index(input_ids: torch.Tensor, position_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                 pad_id: int | None) -> torch.Tensor:
    """A sample id per token, 0..M-1 over the whole micro-batch, -1 for padding.

    Packed rows (position ids given): a sample starts where the position restarts at 0; the
    packer pads a row's tail as one more restarting segment of pad tokens, which is dropped
    (a real sample always holds a prompt, so it is never all padding).
    """
    rows, length = input_ids.shape
    valid = torch.ones_like(input_ids, dtype=torch.bool)
    if position_ids is not None and position_ids.shape == input_ids.shape:
        starts = position_ids == 0
        starts[:, 0] = True  # a row always opens a sample, even mid-generation
        segment = starts.long().cumsum(1) - 1
        if pad_id is not None:
            in_last = segment == segment[:, -1:]
            tail_is_padding = ((input_ids == pad_id) | ~in_last).all(1) & (segment[:, -1] > 0)
            valid &= ~(in_last & tail_is_padding[:, None])
        per_row = segment[:, -1] + 1
        index = segment + (per_row.cumsum(0) - per_row)[:, None]
    else:
        index = torch.arange(rows, device=input_ids.device)[:, None].expand(rows, length)
    if attention_mask is not None and attention_mask.shape == input_ids.shape:
        valid &= attention_mask.bool()
    out = torch.full_like(input_ids, -1)
    out[valid] = torch.unique(index[valid], return_inverse=True)[1]
    return out


def install_sample_recorder(model: Any, pad_id: int | None) -> None:
    """Record `sample_index` of every forward's inputs on `model` (attribute SAMPLE_INDEX_ATTR).

    The hook sits on the decoder, not the top model: the engine calls the decoder directly so
    that the output head runs only on loss positions, and the top model calls it too.
    """
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model

    def record(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        index = None
        if isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2:
            index = sample_index(input_ids, kwargs.get("position_ids"), kwargs.get("attention_mask"), pad_id)
        setattr(model, SAMPLE_INDEX_ATTR, index)

    decoder.register_forward_pre_hook(record, with_kwargs=True)


class LocalizedBalanceOptions(MethodOptions):
    weight: float = Field(0.0, ge=0, description="beta, the loss weight (0: off, as the authors' released script).")
    delta: float = Field(0.0, ge=0, le=1, description="delta, how strongly the two expert groups are told apart.")
    knowledge_fraction: float = Field(0.5, gt=0, lt=1, description="Share of experts in the world-knowledge group.")
    label: Literal["knowledge", "task"] | None = Field(
        None, description="Task type of every sample of this run (None: no labels, I = 1).")


class LocalizedBalance:
    description: ClassVar[str] = "LoRAMoE's localized balancing constraint over the router weights (cv^2 of I*Q)."
    Options: ClassVar[type[MethodOptions]] = LocalizedBalanceOptions

    def __init__(self, options: LocalizedBalanceOptions, ctx: Any = None) -> None:
        self.options = options

    def loss(self, model: Any, step: int) -> torch.Tensor | None:
        o = self.options
        if o.weight == 0:
            return None
        layers = [m for m in model.modules() if isinstance(m, LoraMoELinear)]
        if not layers:
            raise UserError("auxiliary loss loramoe_balance: the model has no LoRA-MoE layers; "
                            "use it with the loramoe adapter")
        samples = getattr(model, SAMPLE_INDEX_ATTR, None)
        if samples is None:
            raise RuntimeError("no sample index was recorded: wrap the model with the loramoe adapter, "
                               "which installs the recorder, and call the model with input_ids")
        n_samples = int(samples.max()) + 1
        labels = None if o.label is None else torch.full((max(n_samples, 1),), LABELS[o.label], dtype=torch.long)
        total = sum(localized_balance_loss(m.last_router_probs, samples, labels,
                                           knowledge_experts(m.n_experts, o.knowledge_fraction), o.delta)
                    for m in layers if m.last_router_probs is not None)
        return o.weight * total
