"""`atax table`: paper-style result tables from a results store or from a JSON of numbers."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from harness.errors import UserError

FORMATS = ("md", "latex", "csv", "html")


def table(
    results: Path | None = typer.Option(None, "--results", help="Results directory (holding results.sqlite)."),
    from_json: Path | None = typer.Option(None, "--from-json", help='Render {"columns": [...], "rows": [{"row", '
                                          '"values"}]} (or one table of a reference file) instead of a store.'),
    table_name: str | None = typer.Option(None, "--table", help="--from-json on a file of several tables: which one."),
    fmt: str = typer.Option("md", "--format", help="md, latex (booktabs), csv or html."),
    columns: str | None = typer.Option(None, "--columns", help="Benchmarks to show, in order, optionally renamed: "
                                       "gsm8k=GSM8K,mmlu. Default: the paper's Table 1 and Table 3 layouts."),
    experiment: str | None = typer.Option(None, "--experiment", help="Only this experiment's runs."),
    reference_method: str | None = typer.Option(None, "--reference-method",
                                                help="Mark cells significantly better/worse than this row (e.g. vanilla)."),
    correction: str = typer.Option("holm", "--correction", help="Across each row's benchmarks: holm, bh or none."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level after correction."),
    std: bool = typer.Option(False, "--std/--no-std", help="Show ± standard deviation over seeds."),
    include_reference: list[str] = typer.Option([], "--include-reference",
                                                help="Add reported numbers from results/reference/ID.json (e.g. fu2024)."),
    reference_dir: Path | None = typer.Option(None, "--reference-dir", help="Where reference files live."),
    exclude_from_ranking: list[str] = typer.Option([], "--exclude-from-ranking",
                                                   help="Keep this row out of bold/underline (repeatable)."),
    lower_is_better: list[str] = typer.Option([], "--lower-is-better", help="Rank this column ascending (repeatable)."),
    out: Path | None = typer.Option(None, "--out", help="Write the table to this file instead of stdout."),
) -> None:
    """Print result tables: best bold, second underlined, ties share the mark, '–' for a missing run."""
    from harness.report.render import legend, render
    from harness.report.table import Table

    if fmt not in FORMATS:
        raise UserError(f"--format: unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if (results is None) == (from_json is None):
        raise UserError("give exactly one of --results DIR or --from-json FILE")
    tables: list[Table] = (_json_tables(from_json, table_name, exclude_from_ranking, lower_is_better)
                           if from_json is not None else
                           _store_tables(results, columns, experiment, reference_method, correction, alpha, std,  # type: ignore[arg-type]
                                         exclude_from_ranking, lower_is_better))
    if include_reference:
        from harness.report.reference import add_reference_rows, load_reference

        for name in include_reference:
            reference = load_reference(name, reference_dir)
            for t in tables:
                add_reference_rows(t, reference)
    text = "\n\n".join(render(t, fmt) for t in tables)
    if out is not None:
        from harness.atomic import write_text_atomic

        write_text_atomic(out, text + "\n")
        typer.echo(f"wrote {out}")
    else:
        typer.echo(text)
    if fmt == "csv":  # markdown, LaTeX and HTML carry their notes; CSV rows cannot
        for t in tables:
            for line in legend(t):
                sys.stderr.write(line + "\n")


def _json_tables(path: Path, table_name: str | None, exclude: list[str], lower: list[str]) -> list:
    import json

    from harness.report.table import apply_options, table_from_json

    if not path.is_file():
        raise UserError(f"--from-json: no file {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"--from-json: {path} is not valid JSON ({exc})") from exc
    return [apply_options(table_from_json(data, str(path), table_name), exclude, lower)]


def _store_tables(results: Path, columns: str | None, experiment: str | None, reference_method: str | None,
                  correction: str, alpha: float, std: bool, exclude: list[str], lower: list[str]) -> list:
    from dataclasses import replace

    from harness.report.from_store import BASE_ROW, TableOptions, build_tables
    from harness.report.table import parse_columns
    from harness.stats.corrections import CORRECTIONS
    from harness.store import RESULTS_DB_NAME, ResultsStore

    if correction not in CORRECTIONS:
        raise UserError(f"--correction: unknown {correction!r}; choose one of: {', '.join(CORRECTIONS)}")
    if not (results / RESULTS_DB_NAME).is_file():
        raise UserError(f"--results: no {RESULTS_DB_NAME} in {results}; give the experiment's results directory")
    from harness.store.health import integrity_warning

    if (warning := integrity_warning(results)) is not None:
        typer.echo(warning, err=True)
    options = TableOptions(columns=parse_columns(columns) if columns else None, experiment=experiment,
                           reference_method=reference_method, correction=correction, alpha=alpha, show_std=std,
                           exclude_from_ranking=(BASE_ROW, *exclude))
    with ResultsStore.open(results) as store:
        tables = build_tables(store, options)
    for name in exclude:
        if not any(r.name == name for t in tables for r in t.rows):
            raise UserError(f"--exclude-from-ranking: no row {name!r}; rows: "
                            f"{', '.join(sorted({r.name for t in tables for r in t.rows}))}")
    for name in lower:
        hits = [t for t in tables if any(c.matches(name) for c in t.columns)]
        if not hits:
            raise UserError(f"--lower-is-better: no column {name!r}")
        for t in hits:
            t.columns = [replace(c, lower_is_better=True) if c.matches(name) else c for c in t.columns]
    return tables
