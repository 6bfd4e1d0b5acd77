"""Content keys: a short hash of everything that determines an output, so equal work is found and reused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def content_key(obj: Any, length: int = 20) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def directory_hash(directory: Path) -> str:
    """sha256 over the relative paths and bytes of every file under `directory`."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode("utf-8") + b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
