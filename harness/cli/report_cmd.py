"""`atax report`: the static leaderboard page, tables and figures from a results store."""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    results: Path = typer.Option(..., "--results", help="Results directory (holding results.sqlite)."),
    out: Path = typer.Option(..., "--out", help="Report directory (replaced atomically; index.html inside)."),
    experiment: str | None = typer.Option(None, "--experiment", help="Only this experiment's runs."),
    reference_method: str = typer.Option("vanilla", "--reference-method",
                                         help="Mark significance against this row when present."),
    include_reference: list[str] = typer.Option([], "--include-reference",
                                                help="Add reported numbers from results/reference/ID.json (e.g. fu2024)."),
    reference_dir: Path | None = typer.Option(None, "--reference-dir", help="Where reference files live."),
    correction: str = typer.Option("holm", "--correction", help="holm, bh or none."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level after correction."),
    title: str = typer.Option("atax leaderboard", "--title", help="Page title."),
    sweep_config: Path | None = typer.Option(None, "--sweep-config",
                                             help="An experiment YAML with a sweep section: add its data-size figure."),
) -> None:
    """Write OUT/index.html (sortable tables, figures, significance matrices, provenance), OUT/tables, OUT/figures."""
    from harness.errors import UserError
    from harness.report.page import ReportOptions, write_report
    from harness.stats.corrections import CORRECTIONS
    from harness.store import RESULTS_DB_NAME

    if correction not in CORRECTIONS:
        raise UserError(f"--correction: unknown {correction!r}; choose one of: {', '.join(CORRECTIONS)}")
    if not (results / RESULTS_DB_NAME).is_file():
        raise UserError(f"--results: no {RESULTS_DB_NAME} in {results}; give the experiment's results directory")
    from harness.store.health import integrity_warning

    if (warning := integrity_warning(results)) is not None:
        typer.echo(warning, err=True)
    sweep = None
    if sweep_config is not None:
        from harness.config import load_experiment

        sweep = load_experiment(sweep_config)
        if sweep.sweep is None:
            raise UserError(f"--sweep-config: {sweep_config} has no sweep section; give the experiment that ran the sweep")
    written = write_report(results, out, ReportOptions(experiment, reference_method, include_reference, reference_dir,
                                                       correction, alpha, title, sweep))
    for note in written.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"report: {written.index} ({len(written.files)} files)")
