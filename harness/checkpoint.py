"""The on-disk checkpoint: a directory with `checkpoint.json` (kind, base model, provenance)
beside a LoRA adapter, several adapters, or dense weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError

MANIFEST = "checkpoint.json"
KINDS = ("base", "lora", "ensemble", "loramoe", "dense")


@dataclass(frozen=True)
class Checkpoint:
    """A reference to a complete checkpoint directory and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise UserError(f"{path}: not a checkpoint (no {MANIFEST}); give a directory written by atax")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{manifest_path}: unreadable manifest ({exc}); re-create the checkpoint") from exc
        if manifest.get("kind") not in KINDS:
            raise UserError(f"{manifest_path}: kind must be one of {', '.join(KINDS)} (got {manifest.get('kind')!r})")
        return cls(path, manifest)
