"""Tell what a model or data reference names: a built-in, a local path, or a hub id.

Every loader accepts all three, so air-gapped users can point at local copies of what
others download from the hub.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.builtin import BUILTIN_PREFIX

# A hub id is `name` or `org/name`: never two slashes, never a leading dot or slash.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")
_FILE_SUFFIXES = (".json", ".jsonl", ".parquet", ".txt", ".csv", ".gz", ".gguf")


@dataclass(frozen=True)
class Source:
    kind: Literal["builtin", "local", "hub"]
    ref: str
    path: Path | None = None  # set for local sources, absolute


def classify(ref: str, base_dir: Path) -> Source:
    """Classify `ref`; relative local paths are taken relative to `base_dir`."""
    if ref.startswith(BUILTIN_PREFIX):
        return Source("builtin", ref)
    candidate = Path(ref).expanduser()
    if not candidate.is_absolute():
        candidate = base_dir / candidate
    looks_like_path = (
        ref.startswith(("/", ".", "~")) or ref.count("/") >= 2 or ref.lower().endswith(_FILE_SUFFIXES)
    )
    if candidate.exists() or looks_like_path or not _HUB_ID.match(ref):
        return Source("local", ref, candidate.resolve())
    return Source("hub", ref)
