"""Where atax keeps things it builds for itself (the tiny model, cached artifacts)."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$ATAX_CACHE`, else `$XDG_CACHE_HOME/atax`, else `~/.cache/atax`."""
    if os.environ.get("ATAX_CACHE"):
        return Path(os.environ["ATAX_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "atax"
