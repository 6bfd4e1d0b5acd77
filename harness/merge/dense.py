"""Dense merges, streamed one parameter at a time so peak memory does not grow with K.

Each input is a LoRA adapter on the shared base (θᵢ = θ_base + sᵢBᵢAᵢ, built per module on the
fly) or a dense checkpoint (read lazily from its safetensors). Parameters no input changes are
copied from the base: every operator returns the base there. Output: an HF model directory
with sharded safetensors, the base's config and tokenizer files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from harness.errors import UserError
from harness.merge.adapters import Adapter

SHARD_BYTES = 256 * 1024 * 1024
_COPY_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "tokenizer.model", "chat_template.jinja")


class SafetensorsDir:
    """Lazy, name-addressed access to the tensors of a model directory (sharded or not)."""

    def __init__(self, directory: Path, stack: ExitStack) -> None:
        files = sorted(Path(directory).glob("*.safetensors"))
        files = [f for f in files if not f.name.startswith("adapter_")]
        if not files:
            raise UserError(f"{directory}: no *.safetensors weights; give a model directory in safetensors format")
        self._where: dict[str, Any] = {}
        for file in files:
            handle = stack.enter_context(safe_open(str(file), framework="pt"))
            for name in handle.keys():
                self._where[name] = handle

    def names(self) -> list[str]:
        return list(self._where)

    def get(self, name: str) -> torch.Tensor:
        return self._where[name].get_tensor(name)

    def __contains__(self, name: str) -> bool:
        return name in self._where


def seed_for(seed: int, name: str) -> int:
    """A per-parameter seed, so random operators do not depend on the order of visits."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:7], "big")


def merge_dense(base_dir: Path, inputs: Sequence[Adapter | Path], op: Callable[..., torch.Tensor],
                out_dir: Path, *, weights: Sequence[float] | None, params: dict[str, Any], seed: int,
                fishers: Sequence[dict[str, torch.Tensor]] | None = None, shard_bytes: int = SHARD_BYTES) -> dict[str, int]:
    """Write the merged model's safetensors + index into `out_dir`; returns counts for the manifest."""
    with ExitStack() as stack:
        base = SafetensorsDir(base_dir, stack)
        dense_inputs = {i: SafetensorsDir(p, stack) for i, p in enumerate(inputs) if not isinstance(p, Adapter)}
        writer = _ShardWriter(out_dir, shard_bytes)
        merged = copied = 0
        for name in base.names():
            base_tensor = base.get(name)
            thetas = []
            for i, source in enumerate(inputs):
                if isinstance(source, Adapter):
                    module = source.modules.get(name)
                    thetas.append(None if module is None else (base_tensor.float() + module.delta()).to(base_tensor.dtype))
                else:
                    thetas.append(dense_inputs[i].get(name) if name in dense_inputs[i] else None)
            if all(t is None for t in thetas):
                writer.add(name, base_tensor)
                copied += 1
                continue
            thetas = [base_tensor if t is None else t for t in thetas]
            extra = dict(params)
            if fishers is not None:
                extra["fishers"] = [f.get(name, torch.ones_like(base_tensor, dtype=torch.float32)) for f in fishers]
            writer.add(name, op(thetas, base=base_tensor, weights=weights, seed=seed_for(seed, name), **extra))
            merged += 1
        writer.close()
    for file in _COPY_FILES:
        if (Path(base_dir) / file).is_file():
            shutil.copy2(Path(base_dir) / file, Path(out_dir) / file)
    return {"merged_tensors": merged, "copied_tensors": copied}


class _ShardWriter:
    """Accumulates tensors up to `shard_bytes`, then writes a shard; writes the HF index at the end."""

    def __init__(self, out_dir: Path, shard_bytes: int) -> None:
        self.out_dir, self.shard_bytes = Path(out_dir), shard_bytes
        self.buffer: dict[str, torch.Tensor] = {}
        self.size = 0
        self.shards: list[list[str]] = []
        self.total = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        nbytes = tensor.numel() * tensor.element_size()
        if self.buffer and self.size + nbytes > self.shard_bytes:
            self._flush()
        self.buffer[name] = tensor.contiguous()
        self.size += nbytes
        self.total += nbytes

    def _flush(self) -> None:
        index = len(self.shards)
        save_file(self.buffer, str(self.out_dir / f"model-{index:05d}.safetensors.part"), metadata={"format": "pt"})
        self.shards.append(list(self.buffer))
        self.buffer, self.size = {}, 0

    def close(self) -> None:
        if self.buffer:
            self._flush()
        n = len(self.shards)
        weight_map = {}
        for index, names in enumerate(self.shards):
            final = "model.safetensors" if n == 1 else f"model-{index + 1:05d}-of-{n:05d}.safetensors"
            (self.out_dir / f"model-{index:05d}.safetensors.part").rename(self.out_dir / final)
            weight_map.update(dict.fromkeys(names, final))
        if n > 1:
            index_file = {"metadata": {"total_size": self.total}, "weight_map": weight_map}
            (self.out_dir / "model.safetensors.index.json").write_text(json.dumps(index_file, indent=2))

