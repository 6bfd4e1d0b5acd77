"""Turn one optimizer step's examples into micro-batches: packed, length-grouped, or padded.

All three give the same loss: targets are shifted inside each sample (a sample's last token
never predicts the next sample's first), and the step's loss is normalised by the step's total
number of loss tokens, not per micro-batch. Batching only changes how much compute is wasted.

Packed rows carry `position_ids` that restart at 0 for every sample and no attention mask;
the training attention (harness.train.attention) attends within each sample only, and
transformers' own kernels build a block-diagonal causal mask from the same position ids
(checked at start-up by `packing_is_isolated`). Padding always comes after a row's tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from harness.data.templates import IGNORE_INDEX, TokenizedExample

Batching = Literal["packed", "grouped", "padded"]


@dataclass
class MicroBatch:
    input_ids: torch.Tensor  # [rows, length]
    targets: torch.Tensor  # [rows, length], already shifted: targets[t] is the token after input_ids[t]
    position_ids: torch.Tensor | None  # packed rows only
    attention_mask: torch.Tensor | None  # padded rows only
    n_samples: int
    n_real_tokens: int  # tokens that are not padding

    @property
    def n_loss_tokens(self) -> int:
        return int((self.targets != IGNORE_INDEX).sum())

    def model_inputs(self, device: torch.device) -> dict[str, torch.Tensor]:
        inputs = {"input_ids": self.input_ids.to(device)}
        if self.position_ids is not None:
            inputs["position_ids"] = self.position_ids.to(device)
        if self.attention_mask is not None:
            inputs["attention_mask"] = self.attention_mask.to(device)
        return inputs


def shifted_targets(example: TokenizedExample) -> list[int]:
    return [*example.labels[1:], IGNORE_INDEX]


def packed_row_length(hidden_size: int, max_seq_len: int) -> int:
    """How long a packed row may grow when attention over it is masked (no varlen kernel).

    A row of length L costs ~2*L*h attention work per
    token against ~12*h^2 for the linear layers; rows longer than ~6*h would spend more on
    masked-out attention than packing saves. For 7B models that is never binding (6*4096);
    for the tiny test model it keeps rows short.
    """
    return max(1, min(max_seq_len, 6 * hidden_size))


def make_micro_batches(examples: Sequence[TokenizedExample], how: Batching, micro_batch_size: int,
                       max_seq_len: int, pad_id: int, row_length: int | None = None) -> list[MicroBatch]:
    """Micro-batches of `micro_batch_size` samples (padded, grouped) or rows (packed)."""
    if how == "packed":
        rows = _pack_rows(examples, row_length or max_seq_len)
        return [_packed_batch(rows[i:i + micro_batch_size], pad_id) for i in range(0, len(rows), micro_batch_size)]
    ordered = sorted(examples, key=lambda e: -len(e.input_ids)) if how == "grouped" else list(examples)
    return [_padded_batch(ordered[i:i + micro_batch_size], pad_id) for i in range(0, len(ordered), micro_batch_size)]


def _padded_batch(examples: Sequence[TokenizedExample], pad_id: int) -> MicroBatch:
    length = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    targets = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        targets[row, :n] = torch.tensor(shifted_targets(example))
        mask[row, :n] = 1
    return MicroBatch(ids, targets, None, mask, len(examples), int(mask.sum()))


def _pack_rows(examples: Sequence[TokenizedExample], capacity: int) -> list[list[TokenizedExample]]:
    """First-fit decreasing: few rows, little padding, deterministic for a given input order."""
    rows: list[list[TokenizedExample]] = []
    free: list[int] = []
    for example in sorted(examples, key=lambda e: -len(e.input_ids)):
        n = len(example.input_ids)  # a sample longer than `capacity` simply gets a row of its own
        for index, room in enumerate(free):
            if n <= room:
                rows[index].append(example)
                free[index] -= n
                break
        else:
            rows.append([example])
            free.append(capacity - n)
    return rows


def _packed_batch(rows: Sequence[Sequence[TokenizedExample]], pad_id: int) -> MicroBatch:
    length = max(sum(len(e.input_ids) for e in row) for row in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(rows), length), dtype=torch.long)
    real = 0
    for r, row in enumerate(rows):
        start = 0
        for example in row:
            n = len(example.input_ids)
            ids[r, start:start + n] = torch.tensor(example.input_ids)
            targets[r, start:start + n] = torch.tensor(shifted_targets(example))
            positions[r, start:start + n] = torch.arange(n)
            start += n
        real += start
        # Padding is one more "sample" with its own restarting positions, so it attends only to itself.
        positions[r, start:] = torch.arange(length - start)
    return MicroBatch(ids, targets, positions, None, sum(len(row) for row in rows), real)
