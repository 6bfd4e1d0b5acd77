"""`atax data pull` and `atax data check`: a suite's local data layout (for air-gapped clusters).

`pull` runs on a machine with hub access and writes the layout `--data-dir` reads; `convert`
writes it from a benchmark's original release files; `check` validates a copy and names every
missing file or column. Suites that read local data provide `pull_data(to_dir, benchmarks, log)`,
`convert_data(dataset, source, to_dir)` and `check_data(data_dir, benchmarks, allow_partial)`; a suite
that knows the official releases' sizes also provides `check_data_report(...) -> (problems, lines)`,
one line per dataset split saying `complete` or `partial (n of N)`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from harness import registry
from harness.errors import UserError

app = typer.Typer(help="Local copies of benchmark data.", no_args_is_help=True)

SuiteOption = typer.Option("knowledge", "--suite", help="Registered suite (see `atax suites`).")
BenchmarksOption = typer.Option(None, "--benchmarks", help="Comma-separated subset (default: the suite's own).")


def _suite(name: str, method: str) -> Any:
    suite = registry.suites.get(name)()
    if not hasattr(suite, method):
        raise UserError(f"suite '{name}' reads no local data layout; nothing to {method.split('_')[0]}")
    return suite


def _names(benchmarks: str | None) -> list[str] | None:
    return [b.strip() for b in benchmarks.split(",") if b.strip()] if benchmarks else None


@app.command("pull")
def pull(
    to: Path = typer.Option(..., "--to", help="Directory to write (created if absent)."),
    suite: str = SuiteOption,
    benchmarks: str | None = BenchmarksOption,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not list the files written."),
) -> None:
    """Download the suite's benchmarks from the hub into the layout `atax eval --data-dir` reads."""
    written = _suite(suite, "pull_data").pull_data(to, _names(benchmarks), (lambda m: None) if quiet else typer.echo)
    typer.echo(f"{to}: {len(written)} files written; check them with `atax data check {to}`")


@app.command("convert")
def convert(
    dataset: str = typer.Argument(..., help="Dataset of the layout (e.g. mmlu, race; see README)."),
    source: Path = typer.Argument(..., help="The original release file or directory."),
    to: Path = typer.Option(..., "--to", help="Data directory to write into."),
    suite: str = SuiteOption,
) -> None:
    """Write DATASET into the `--data-dir` layout from its original release files."""
    written = _suite(suite, "convert_data").convert_data(dataset, source, to)
    typer.echo(f"{to}: {len(written)} files written for {dataset}")


@app.command("check")
def check(
    data_dir: Path = typer.Argument(..., help="Directory laid out as `atax data pull` writes it."),
    suite: str = SuiteOption,
    benchmarks: str | None = BenchmarksOption,
    allow_partial: bool = typer.Option(False, "--allow-partial", help=(
        "Accept copies smaller than the official release: some subsets (MMLU subjects, ...) or fewer items.")),
) -> None:
    """Validate DATA_DIR against the schema and the official releases' sizes: exit 0, or list every
    problem and exit 2."""
    plugin = _suite(suite, "check_data")
    lines: list[str] = []
    if hasattr(plugin, "check_data_report"):
        problems, lines, incomplete = plugin.check_data_report(data_dir, _names(benchmarks), allow_partial)
    else:
        problems, incomplete = plugin.check_data(data_dir, _names(benchmarks), allow_partial), []
    if problems:
        for problem in problems:
            sys.stderr.write(f"{problem}\n")
        raise UserError(f"{data_dir}: {len(problems)} problem(s); the first: {problems[0]}")
    for line in lines:
        typer.echo(line)
    if incomplete and not allow_partial:
        raise UserError(f"{data_dir}: {len(incomplete)} dataset split(s) differ from the official release "
                        f"({'; '.join(incomplete[:3])}{'; ...' if len(incomplete) > 3 else ''}); give the complete "
                        "files, or pass --allow-partial to accept them (scores are marked partial)")
    typer.echo(f"{data_dir}: ok" + (f" ({len(incomplete)} partial)" if incomplete else ""))
