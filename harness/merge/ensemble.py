"""The logit ensemble (DTM paper, Table 7): K LoRA sub-models on one base, kept apart, whose
next-token probabilities are averaged at evaluation time (hf backend; K forward passes per token).

The checkpoint (kind `ensemble`) holds the members' adapters under `members/<i>/` and their
weights in the manifest.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.checkpoint import Checkpoint, find_complete, write_checkpoint
from harness.checkpoint_payload import ADAPTER_CONFIG, ADAPTER_WEIGHTS, ENSEMBLE_MEMBERS
from harness.keys import content_key
from harness.merge.operators import check_weights

MEMBERS = ENSEMBLE_MEMBERS


def make_ensemble(checkpoints: Sequence[Checkpoint], out_dir: Path, weights: Sequence[float] | None = None,
                  provenance: dict[str, Any] | None = None) -> Checkpoint:
    """Checked by `check_merge` (LoRA members of one base, valid weights) before it is called."""
    w = check_weights(weights, len(checkpoints))
    key = content_key({"ensemble": [c.run_key or str(c.path) for c in checkpoints], "weights": w})
    existing = find_complete(out_dir, key)
    if existing is not None:
        return existing
    manifest = {"kind": "ensemble", "run_key": key, "base_model": checkpoints[0].base_model.as_dict(),
                "ensemble": {"weights": w, "members": [{"path": str(c.path), "run_key": c.run_key}
                                                       for c in checkpoints]},
                "provenance": provenance or {}}

    def payload(tmp: Path) -> None:
        for i, checkpoint in enumerate(checkpoints):
            member = tmp / MEMBERS / str(i)
            member.mkdir(parents=True)
            for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
                shutil.copy2(checkpoint.path / name, member / name)

    return write_checkpoint(out_dir, manifest, payload)


def member_dirs(checkpoint_dir: Path) -> list[Path]:
    members = Path(checkpoint_dir) / MEMBERS
    return sorted((p for p in members.iterdir() if p.is_dir()), key=lambda p: int(p.name))
