"""`atax config check FILE`: validate an experiment file without running anything."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.config import load_experiment

app = typer.Typer(help="Experiment files.", no_args_is_help=True)


@app.command("check")
def check(file: Path = typer.Argument(..., help="Experiment YAML file.")) -> None:
    """Validate FILE; exit 0 when valid, 2 with one line naming the bad field otherwise."""
    experiment = load_experiment(file)
    rows = ", ".join(m.row_name for m in experiment.methods)
    typer.echo(f"{file}: ok — {len(experiment.methods)} method(s) ({rows}), "
               f"{len(experiment.suites)} suite(s), {len(experiment.seeds)} seed(s)")
