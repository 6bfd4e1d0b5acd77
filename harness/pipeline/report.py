"""The report job: the comparison table (markdown) and, where the report package is installed
in this version, the full leaderboard page — written into `<results>/report/`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.atomic import write_text_atomic
from harness.config import Experiment


def write_report(experiment: Experiment, results_dir: Path) -> dict[str, Any]:
    from harness.pipeline.summary import summary_table

    table = summary_table(results_dir, experiment.name)
    out = Path(results_dir) / "report"
    write_text_atomic(out / "table.md", table + "\n")
    return {"table": str(out / "table.md")}
