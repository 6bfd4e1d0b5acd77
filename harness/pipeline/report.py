"""The report job: the leaderboard page (harness.report) and the comparison tables in markdown,
with paired tests against vanilla when the experiment has it, written into
`<results>/reports/<experiment>/` (one directory per experiment: experiments may share a results
directory, and each one's report is its own)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.atomic import write_text_atomic
from harness.config import Experiment


def report_dir(results_dir: Path, experiment_name: str) -> Path:
    """Where the report of `experiment_name` lives under `results_dir`."""
    return Path(results_dir) / "reports" / experiment_name


def reference_row(experiment: Experiment) -> str | None:
    """The row the paired tests compare against: vanilla when the experiment has it."""
    return "vanilla" if any(m.row_name == "vanilla" for m in experiment.methods) else None


def table_markdown(experiment: Experiment, results_dir: Path) -> str:
    """The experiment's comparison tables in markdown, built from the store (never from a file that
    another experiment's report could have replaced)."""
    from harness.report.from_store import TableOptions, build_tables
    from harness.report.render import render
    from harness.store import ResultsStore

    if not experiment.suites:
        return "(no evaluation suite in this experiment: nothing to tabulate)"
    with ResultsStore.open(results_dir) as store:
        tables = build_tables(store, TableOptions(experiment=experiment.name,
                                                  reference_method=reference_row(experiment)))
    return "\n\n".join(render(t, "md") for t in tables)


def write_report(experiment: Experiment, results_dir: Path, sweep: Experiment | None = None) -> dict[str, Any]:
    """`sweep`: the experiment as written, when it has a sweep section (its figure joins the page)."""
    from harness.report.page import ReportOptions
    from harness.report.page import write_report as write_page

    out = report_dir(results_dir, experiment.name)
    if not experiment.suites:
        write_text_atomic(out / "table.md", table_markdown(experiment, results_dir) + "\n")
        return {"table": str(out / "table.md")}
    page = write_page(results_dir, out, ReportOptions(experiment=experiment.name,
                                                      reference_method=reference_row(experiment),
                                                      title=f"atax — {experiment.name}", sweep=sweep))
    write_text_atomic(out / "table.md", table_markdown(experiment, results_dir) + "\n")
    return {"page": str(page.index), "table": str(out / "table.md"), "notes": page.notes}
