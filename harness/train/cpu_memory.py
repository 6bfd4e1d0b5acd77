"""Keep freed memory inside the process when training on CPU (glibc malloc).

glibc serves allocations above its mmap threshold (a few MB) with fresh mmaps and unmaps them
on free, so every forward pass of a large micro-batch page-faults its activations back in:
cross-entropy over 7000 rows x 1000 classes ran 4x slower than over 3500 rows on this project's
CI machine. Raising the mmap and trim thresholds keeps those pages in the heap for reuse (what
PyTorch's CPU tuning guide gets from jemalloc/tcmalloc). Peak memory is unchanged; memory freed
after the peak is simply not handed back to the OS while the process lives.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_THRESHOLDS = (1 << 30, 32 << 20)  # glibc builds cap the mmap threshold at 32 MiB or above


def keep_freed_memory(device: Any) -> bool:
    """On CPU, raise glibc's mmap/trim thresholds; True when they were raised."""
    if getattr(device, "type", device) != "cpu" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: nothing to tune
        return False
    for threshold in _THRESHOLDS:
        if mallopt(_M_MMAP_THRESHOLD, threshold) == 1:
            return mallopt(_M_TRIM_THRESHOLD, 2 * threshold) == 1
    return False
