"""The report job: the leaderboard page (harness.report) and the comparison tables in markdown,
with paired tests against vanilla when the experiment has it, written into `<results>/report/`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.atomic import write_text_atomic
from harness.config import Experiment


def write_report(experiment: Experiment, results_dir: Path, sweep: Experiment | None = None) -> dict[str, Any]:
    """`sweep`: the experiment as written, when it has a sweep section (its figure joins the page)."""
    from harness.report.from_store import TableOptions, build_tables
    from harness.report.page import ReportOptions
    from harness.report.page import write_report as write_page
    from harness.report.render import render
    from harness.store import ResultsStore

    reference = "vanilla" if any(m.row_name == "vanilla" for m in experiment.methods) else None
    out = Path(results_dir) / "report"
    if not experiment.suites:
        write_text_atomic(out / "table.md", "(no evaluation suite in this experiment: nothing to tabulate)\n")
        return {"table": str(out / "table.md")}
    page = write_page(results_dir, out, ReportOptions(experiment=experiment.name, reference_method=reference,
                                                      title=f"atax — {experiment.name}", sweep=sweep))
    with ResultsStore.open(results_dir) as store:
        tables = build_tables(store, TableOptions(experiment=experiment.name, reference_method=reference))
    text = "\n\n".join(render(t, "md") for t in tables)
    write_text_atomic(out / "table.md", text + "\n")
    return {"page": str(page.index), "table": str(out / "table.md"), "notes": page.notes}
