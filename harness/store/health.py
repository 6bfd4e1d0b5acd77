"""Is the results store sound? A warning line for commands that only read it (`atax table`,
`atax report`), so numbers from a damaged file are never shown as if nothing were wrong."""

from __future__ import annotations

from pathlib import Path

from harness.errors import UserError
from harness.store.store import RESULTS_DB_NAME, ResultsStore


def integrity_warning(results_dir: Path) -> str | None:
    """One line when SQLite's quick_check fails on `<results_dir>/results.sqlite`, else None."""
    try:
        with ResultsStore.open(results_dir) as store:
            problem = store.integrity_problem()
    except UserError:  # the command opening it next says what is wrong, in one line
        return None
    if problem is None:
        return None
    return (f"warning: {Path(results_dir) / RESULTS_DB_NAME} failed its integrity check ({problem}); "
            "what it shows may be incomplete or wrong: restore it from a backup or re-run the experiment")
