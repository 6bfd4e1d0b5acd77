"""The on-disk checkpoint: a directory with `checkpoint.json` (kind, base model, provenance)
beside a LoRA adapter, several adapters, or dense weights.

`Checkpoint.load` validates what it opens (the manifest's fields and the payload files, cheaply)
so every command fails in one line on a damaged checkpoint; the typed accessors (`base_model`,
`provenance`, `merge`, `variant`, `training`, ...) are the one way code reads a manifest.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.atomic import atomic_dir
from harness.checkpoint_payload import check_payload
from harness.errors import UserError
from harness.manifest import (
    BaseModelRef,
    Manifest,
    MergeRecord,
    Provenance,
    ScaledFrom,
    TrainingProtocol,
    parse_manifest,
)

MANIFEST = "checkpoint.json"
KINDS = ("base", "lora", "ensemble", "loramoe", "dense")
# Facts about the process that wrote a checkpoint, not its content: left out of its content hash, so two
# bit-identical trainings (or a resumed one) hash identically.
VOLATILE_FIELDS = frozenset({"wall_time_s", "resumed_from_step", "created_at", "written_at", "host", "hostname",
                             "pid"})


@dataclass(frozen=True)
class Checkpoint:
    """A reference to a complete checkpoint directory and its manifest (raw, and typed)."""

    path: Path
    manifest: dict[str, Any]
    info: Manifest = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        info = parse_manifest(self.manifest, str(Path(self.path) / MANIFEST))
        if info.kind not in KINDS:
            raise UserError(f"{Path(self.path) / MANIFEST}: kind must be one of {', '.join(KINDS)} "
                            f"(got {self.manifest.get('kind')!r}); re-create the checkpoint")
        object.__setattr__(self, "info", info)

    @property
    def kind(self) -> str:
        return str(self.info.kind)

    @property
    def run_key(self) -> str | None:
        return self.info.run_key

    @property
    def store_key(self) -> str:
        """The checkpoint's key in the results store: its run key, else its directory name."""
        return self.info.run_key or self.path.name

    @property
    def base_model(self) -> BaseModelRef:
        return self.info.base_model

    @property
    def provenance(self) -> Provenance:
        return self.info.provenance

    @property
    def method(self) -> str | None:
        """The registered method that made the checkpoint, if it says."""
        return self.info.provenance.registered_method

    @property
    def merge(self) -> MergeRecord | None:
        """How it was merged or ensembled from other checkpoints (None for a trained run)."""
        return self.info.merge

    @property
    def scaled_from(self) -> ScaledFrom | None:
        return self.info.scaled_from

    @property
    def variant(self) -> str | None:
        return self.info.variant

    @property
    def training(self) -> TrainingProtocol | None:
        """How it was trained (None unless it is a trained run)."""
        return self.info.training

    def require_base_id(self) -> str:
        if not self.base_model.id:
            raise UserError(f"{self.path / MANIFEST}: base_model.id is missing; re-create the checkpoint")
        return self.base_model.id

    def content_hash(self) -> str:
        """sha256 over the payload files and the manifest without its volatile fields."""
        return content_hash(self.path)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        """The checkpoint at `path`, its manifest parsed and its files checked; one-line errors."""
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise UserError(f"{path}: not a checkpoint (no {MANIFEST}); give a directory written by atax")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{manifest_path}: unreadable manifest ({exc}); delete {path} and re-create the "
                            "checkpoint") from None
        checkpoint = cls(path, manifest)
        check_payload(path, checkpoint.kind)
        return checkpoint


def stable_manifest(manifest: Any) -> Any:
    """The manifest without VOLATILE_FIELDS (at any depth)."""
    if isinstance(manifest, dict):
        return {k: stable_manifest(v) for k, v in manifest.items() if k not in VOLATILE_FIELDS}
    if isinstance(manifest, list):
        return [stable_manifest(v) for v in manifest]
    return manifest


def content_hash(directory: Path) -> str:
    """sha256 over the relative paths and bytes of every file of a checkpoint, its manifest without
    volatile fields: equal work hashes equally, so hashes can verify and deduplicate."""
    directory = Path(directory)
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory)
        digest.update(str(relative).encode("utf-8") + b"\0")
        if str(relative) == MANIFEST:
            try:
                stable = stable_manifest(json.loads(path.read_text(encoding="utf-8")))
            except (UnicodeDecodeError, json.JSONDecodeError):
                stable = None
            if stable is not None:
                digest.update(json.dumps(stable, sort_keys=True, separators=(",", ":"), default=str).encode())
                continue
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def write_checkpoint(out_dir: Path, manifest: dict[str, Any], write_payload: Callable[[Path], None]) -> Checkpoint:
    """Write payload + manifest into a temporary directory, then rename it to `out_dir`.

    The manifest is written last, so a directory with a manifest is always complete.
    """
    parse_manifest(manifest, f"{out_dir}/{MANIFEST}")  # a malformed manifest is a bug: never write one
    with atomic_dir(Path(out_dir)) as tmp:
        write_payload(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str), encoding="utf-8")
    return Checkpoint(Path(out_dir), manifest)


def find_complete(out_dir: Path, key: str) -> Checkpoint | None:
    """The checkpoint at `out_dir` if it is complete, intact and was made for `key` (reuse instead of
    redo); a damaged one is said so on stderr and redone (the new one replaces it atomically)."""
    if not (Path(out_dir) / MANIFEST).is_file():
        return None
    try:
        checkpoint = Checkpoint.load(out_dir)
    except UserError as exc:
        print(f"atax: redoing a damaged checkpoint: {exc}", file=sys.stderr)
        return None
    return checkpoint if checkpoint.run_key == key else None
