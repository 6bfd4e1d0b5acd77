"""The on-disk checkpoint: a directory with `checkpoint.json` (kind, base model, provenance)
beside a LoRA adapter, several adapters, or dense weights.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.atomic import atomic_dir
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

    @property
    def store_key(self) -> str:
        """The checkpoint's key in the results store: its run key, else its directory name."""
        return str(self.manifest.get("run_key") or self.path.name)

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


def write_checkpoint(out_dir: Path, manifest: dict[str, Any], write_payload: Callable[[Path], None]) -> Checkpoint:
    """Write payload + manifest into a temporary directory, then rename it to `out_dir`.

    The manifest is written last, so a directory with a manifest is always complete.
    """
    with atomic_dir(Path(out_dir)) as tmp:
        write_payload(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str), encoding="utf-8")
    return Checkpoint(Path(out_dir), manifest)


def find_complete(out_dir: Path, key: str) -> Checkpoint | None:
    """The checkpoint at `out_dir` if it is complete and was made for `key` (reuse instead of retrain)."""
    if not (Path(out_dir) / MANIFEST).is_file():
        return None
    checkpoint = Checkpoint.load(out_dir)
    return checkpoint if checkpoint.manifest.get("run_key") == key else None
