"""Intermediate training state, saved every `save_steps` so a killed run resumes where it was.

Kept beside the final checkpoint directory as `.<name>.resume/` and removed once the
checkpoint is complete. It holds the trainable weights, optimizer, scheduler, RNG states and
the curve so far; the data order is recomputed from the seed.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.atomic import atomic_dir

STATE_FILE = "state.pt"


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    tokens_seen: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)


def resume_dir(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.resume"


def save_state(out_dir: Path, run_key: str, state: TrainState, model: Any, optimizer: Any, scheduler: Any) -> None:
    trainable = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}
    payload = {
        "run_key": run_key, "step": state.step, "tokens_seen": state.tokens_seen, "curve": state.curve,
        "trainable": trainable, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    with atomic_dir(resume_dir(out_dir)) as tmp:
        torch.save(payload, tmp / STATE_FILE)


def load_state(out_dir: Path, run_key: str, model: Any, optimizer: Any, scheduler: Any) -> TrainState | None:
    """Restore a saved state of this run into model/optimizer/scheduler; None when there is none."""
    path = resume_dir(out_dir) / STATE_FILE
    if not path.is_file():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload.get("run_key") != run_key:
        return None  # a state of another configuration: start over rather than mix the two
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in payload["trainable"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["torch_rng"])
    random.setstate(payload["python_rng"])
    if payload["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    return TrainState(payload["step"], payload["tokens_seen"], payload["curve"])


def clear_state(out_dir: Path) -> None:
    shutil.rmtree(resume_dir(out_dir), ignore_errors=True)
