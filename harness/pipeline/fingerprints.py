"""Size, modification time and sha256 of a job's output files, recorded when it finishes and
checked before its outputs are reused.

The check is cheap: a file whose size and mtime are as recorded is trusted without reading it;
one whose mtime changed is hashed again and must match (copied or touched files pass, edited,
truncated or damaged ones do not); a missing or resized file fails at once.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

FileFingerprint = tuple[int, int, str]  # size, mtime_ns, sha256


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint_files(directories: list[Path]) -> dict[str, FileFingerprint]:
    """Every file under `directories` (absolute paths as keys)."""
    files: dict[str, FileFingerprint] = {}
    for directory in directories:
        for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
            stat = path.stat()
            files[str(path)] = (stat.st_size, stat.st_mtime_ns, sha256_file(path))
    return files


def verify_files(files: dict[str, FileFingerprint]) -> str | None:
    """None when every file is as recorded, else what is wrong with the first that is not."""
    for name, (size, mtime_ns, sha256) in files.items():
        path = Path(name)
        try:
            stat = os.stat(path)
        except OSError:
            return f"{path} is missing"
        if stat.st_size != size:
            return f"{path} has {stat.st_size} bytes, {size} when written"
        if stat.st_mtime_ns != mtime_ns and sha256_file(path) != sha256:
            return f"{path} changed since it was written (sha256 differs)"
    return None
