"""No download-count requests while lm-eval builds tasks from local files.

`datasets` sends a HEAD request to its S3 bucket for every packaged loader ("json", "parquet")
it builds, to count downloads: one per lm-eval task, 63 for the nine benchmarks (MMLU and BBH
are groups), ~5 s per knowledge eval on this machine, and up to 3 s each where a firewall drops
packets instead of refusing them. Loading local files downloads nothing, so nothing is counted
there; hub datasets keep their counts, and a HF_UPDATE_DOWNLOAD_COUNTS the user set is obeyed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def no_download_counts(local_data: bool) -> Iterator[None]:
    if not local_data or "HF_UPDATE_DOWNLOAD_COUNTS" in os.environ:
        yield
        return
    import datasets.config

    # datasets reads the setting when it builds each loader, not only at import.
    before = datasets.config.HF_UPDATE_DOWNLOAD_COUNTS
    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False
    try:
        yield
    finally:
        datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = before
