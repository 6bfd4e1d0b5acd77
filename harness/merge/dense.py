"""Dense merges, streamed in row chunks so peak memory depends on neither K nor the model size.

Each input is a LoRA adapter on the shared base (θᵢ rows = base rows + s·B[rows]·A, computed on
the fly) or a dense checkpoint (rows read from its safetensors). Parameters no input changes are
copied from the base: every operator returns the base there. Every operator is elementwise once
TIES' per-tensor magnitude thresholds are known, so they are computed first (one model at a
time) and the tensor is then merged chunk by chunk. Random operators draw per (parameter, chunk)
from a seed derived from both. Output: an HF model directory (safetensors shards + index,
the base's config and tokenizer files).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from harness.errors import UserError
from harness.merge.adapters import Adapter
from harness.merge.tensor_files import TensorFile, TensorSpec, TensorWriter, numel

SHARD_BYTES = 2 * 1024 ** 3
# Entries held per chunk across all K+1 models (base included): operators make a few working
# copies of the stacked chunk, so peak memory stays ~constant in K.
CHUNK_BUDGET = 1 << 22
_COPY_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "tokenizer.model", "chat_template.jinja")


class RowReader(Protocol):
    def read_rows(self, name: str, start: int, stop: int) -> torch.Tensor: ...


class RowSink(Protocol):
    def write(self, name: str, chunk: torch.Tensor) -> None: ...


class ModelFiles:
    """All safetensors files of a model directory, addressed by tensor name."""

    def __init__(self, directory: Path) -> None:
        files = [f for f in sorted(Path(directory).glob("*.safetensors")) if not f.name.startswith("adapter_")]
        if not files:
            raise UserError(f"{directory}: no *.safetensors weights; give a model directory in safetensors format")
        self.files = [TensorFile(f) for f in files]
        self.where = {name: f for f in self.files for name in f.specs}

    def specs(self) -> list[TensorSpec]:
        return [spec for f in self.files for spec in f.specs.values()]

    def read_rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        return self.where[name].read_rows(name, start, stop)

    def close(self) -> None:
        for f in self.files:
            f.close()


def seed_for(seed: int, name: str, chunk: int) -> int:
    """A seed per (parameter, chunk): results do not depend on the order tensors are visited."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}:{chunk}".encode()).digest()[:7], "big")


def merge_dense(base_dir: Path, inputs: Sequence[Adapter | Path], op: Callable[..., torch.Tensor],
                out_dir: Path, *, weights: Sequence[float] | None, params: dict[str, Any], seed: int,
                fishers: Sequence[dict[str, torch.Tensor]] | None = None,
                shard_bytes: int = SHARD_BYTES, chunk_elements: int | None = None) -> dict[str, int]:
    """Write the merged model into `out_dir`; returns counts for the manifest."""
    chunk_elements = chunk_elements or max(1 << 16, CHUNK_BUDGET // (len(inputs) + 1))
    base = ModelFiles(base_dir)
    dense = {i: ModelFiles(p) for i, p in enumerate(inputs) if not isinstance(p, Adapter)}
    counts = {"merged_tensors": 0, "copied_tensors": 0}
    try:
        shards = _plan_shards(base.specs(), shard_bytes)
        weight_map: dict[str, str] = {}
        for index, specs in enumerate(shards):
            file_name = "model.safetensors" if len(shards) == 1 else \
                f"model-{index + 1:05d}-of-{len(shards):05d}.safetensors"
            writer = TensorWriter(Path(out_dir) / file_name, specs)
            for spec in specs:
                changed = rows_sources(spec.name, inputs, dense)
                if not any(changed):
                    counts["copied_tensors"] += 1
                else:
                    counts["merged_tensors"] += 1
                merge_tensor(writer, spec, base, changed, op, weights, params, seed, fishers, chunk_elements)
                weight_map[spec.name] = file_name
            writer.close()
        if len(shards) > 1:
            index_file = {"metadata": {"total_size": sum(s.nbytes for s in base.specs())}, "weight_map": weight_map}
            (Path(out_dir) / "model.safetensors.index.json").write_text(json.dumps(index_file, indent=2))
    finally:
        base.close()
        for files in dense.values():
            files.close()
    for file in _COPY_FILES:
        if (Path(base_dir) / file).is_file():
            shutil.copy2(Path(base_dir) / file, Path(out_dir) / file)
    return counts


RowsSource = Callable[[torch.Tensor, int, int], torch.Tensor] | None


def rows_sources(name: str, inputs: Sequence[Adapter | Path], dense: dict[int, ModelFiles]) -> list[RowsSource]:
    """Per input: a function (base rows, start, stop) -> θᵢ rows, or None where θᵢ = base."""
    sources: list[RowsSource] = []
    for i, source in enumerate(inputs):
        if isinstance(source, Adapter):
            module = source.modules.get(name)
            sources.append(None if module is None else
                           (lambda rows, a, b, m=module: (rows.float() + m.delta(a, b)).to(rows.dtype)))
        else:
            files = dense[i]
            sources.append((lambda rows, a, b, f=files: f.read_rows(name, a, b)) if name in files.where else None)
    return sources


def merge_tensor(writer: RowSink, spec: TensorSpec, base: RowReader, sources: list[RowsSource],
                  op: Callable[..., torch.Tensor], weights: Sequence[float] | None, params: dict[str, Any],
                  seed: int, fishers: Sequence[dict[str, torch.Tensor]] | None, chunk_elements: int) -> None:
    row_elements = max(1, spec.row_bytes // torch.empty((), dtype=spec.dtype).element_size())
    step = max(1, chunk_elements // row_elements)
    extra = dict(params)
    if any(sources) and getattr(op, "needs_magnitude_thresholds", False) and float(params.get("density", 0.2)) < 1.0:
        extra["thresholds"] = [_threshold(spec, base, src, float(params.get("density", 0.2)), step) for src in sources]
    for chunk, start in enumerate(range(0, spec.rows, step)):
        stop = min(spec.rows, start + step)
        rows = base.read_rows(spec.name, start, stop)
        if not any(sources):
            writer.write(spec.name, rows)
            continue
        thetas = [rows if src is None else src(rows, start, stop) for src in sources]
        if fishers is not None:
            extra["fishers"] = [f[spec.name][start:stop] if spec.name in f else torch.ones_like(rows, dtype=torch.float32)
                                for f in fishers]
        writer.write(spec.name, op(thetas, base=rows, weights=weights, seed=seed_for(seed, spec.name, chunk), **extra))


def _threshold(spec: TensorSpec, base: RowReader, source: RowsSource, density: float, step: int) -> float:
    """TIES' whole-tensor magnitude threshold of one input: |δ| gathered chunk by chunk into one
    float32 buffer, then an in-place partial sort (no second copy of the tensor)."""
    if source is None:
        return float("inf")  # δ = 0 everywhere: nothing to keep
    magnitudes = np.empty(numel(spec.shape), dtype=np.float32)
    row_elements = magnitudes.size // max(spec.rows, 1)
    for start in range(0, spec.rows, step):
        stop = min(spec.rows, start + step)
        rows = base.read_rows(spec.name, start, stop)
        delta = (source(rows, start, stop).float() - rows.float()).abs().reshape(-1)
        magnitudes[start * row_elements: stop * row_elements] = delta.numpy()
    k = max(1, int(round(density * magnitudes.size)))
    magnitudes.partition(magnitudes.size - k)
    return float(magnitudes[magnitudes.size - k])


def _plan_shards(specs: list[TensorSpec], shard_bytes: int) -> list[list[TensorSpec]]:
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for spec in specs:
        if shards[-1] and size + spec.nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += spec.nbytes
    return shards
