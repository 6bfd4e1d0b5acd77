"""Re-factorise a merge of LoRA sub-models into one LoRA adapter of a chosen rank.

TIES, DARE, Fisher or parameter selection of LoRA sub-models give a dense delta on each adapted
module (sparsified or element-picked matrices are full-rank), which a 7B model stores as a full
copy of its weights. Here each adapted module's merged delta δ = θ_merged − θ_base is computed in
float32 with the same streamed operator as a dense merge, and replaced by its best rank-r
approximation (truncated SVD, Eckart–Young): B = U_r·√S_r, A = √S_r·V_rᵀ, scale 1. The result
is a peft adapter vLLM can serve. Modules the sub-models do not adapt stay the base's, as in
the dense merge. The relative error ‖δ − B·A‖_F / ‖δ‖_F is measured, per module and over all
modules, and goes into the manifest: it is exactly 0 (to float precision) when r reaches δ's
rank, e.g. the sum of the sub-models' ranks for `average` or `task_arithmetic`.

Cost: one full SVD per adapted module (min(out, in)³-ish), on CUDA when it is available.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from harness.merge.adapters import Adapter
from harness.merge.dense import CHUNK_BUDGET, ModelFiles, merge_tensor, rows_sources


class _Float32Rows:
    """The base model's rows in float32, so δ keeps the precision a bf16 model would round away."""

    def __init__(self, files: ModelFiles) -> None:
        self.files = files

    def read_rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        return self.files.read_rows(name, start, stop).float()


class _Rows:
    """Collects the merged rows of one tensor."""

    def __init__(self) -> None:
        self.chunks: list[torch.Tensor] = []

    def write(self, name: str, chunk: torch.Tensor) -> None:
        self.chunks.append(chunk.float())


def merge_to_lora(base_dir: Path, adapters: Sequence[Adapter], op: Callable[..., torch.Tensor], rank: int, *,
                  weights: Sequence[float] | None, params: dict[str, Any], seed: int,
                  fishers: Sequence[dict[str, torch.Tensor]] | None = None
                  ) -> tuple[dict[str, Any], dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, Any]]:
    """(adapter config, {module weight name: (A, B)}, SVD report for the manifest)."""
    base = ModelFiles(base_dir)
    chunk_elements = max(1 << 16, CHUNK_BUDGET // (len(adapters) + 1))
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    errors: dict[str, float] = {}
    residual_sq = total_sq = 0.0
    try:
        for name in sorted(adapters[0].modules):
            spec = base.where[name].specs[name]
            merged = _Rows()
            merge_tensor(merged, spec, _Float32Rows(base), rows_sources(name, adapters, {}), op, weights, params,
                         seed, fishers, chunk_elements)
            delta = torch.cat(merged.chunks).reshape(spec.shape) - base.read_rows(name, 0, spec.rows).float() \
                .reshape(spec.shape)
            a, b, residual, norm = _truncate(delta.to(device), rank)
            modules[name] = (a, b)
            errors[name] = residual / norm if norm > 0 else 0.0
            residual_sq += residual ** 2
            total_sq += norm ** 2
    finally:
        base.close()
    config = dict(adapters[0].config)
    # alpha = r makes the adapter's own scale 1: B·A is the merged delta.
    config.update(r=rank, lora_alpha=float(rank), use_rslora=False, lora_dropout=0.0, rank_pattern={},
                  alpha_pattern={})
    report = {"rank": rank,
              "relative_error": math.sqrt(residual_sq / total_sq) if total_sq > 0 else 0.0,
              "max_module_relative_error": max(errors.values(), default=0.0),
              "module_relative_errors": errors}
    return config, modules, report


def _truncate(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """(A [rank, in], B [out, rank], ‖δ − B·A‖_F, ‖δ‖_F); zero rows/columns pad a rank above min(out, in)."""
    u, s, vh = torch.linalg.svd(delta, full_matrices=False)
    keep = min(rank, s.numel())
    root = s[:keep].sqrt()
    a = torch.zeros(rank, delta.shape[1], dtype=torch.float32, device=delta.device)
    b = torch.zeros(delta.shape[0], rank, dtype=torch.float32, device=delta.device)
    a[:keep] = root[:, None] * vh[:keep]
    b[:, :keep] = u[:, :keep] * root[None, :]
    # Measured on the factors themselves, not inferred from the discarded singular values.
    residual = float(torch.linalg.matrix_norm(delta - b @ a))
    return a.cpu(), b.cpu(), residual, float(torch.linalg.matrix_norm(delta))
