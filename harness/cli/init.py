"""`atax init`: write a complete example experiment that runs offline on the tiny model."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import typer

from harness.atomic import write_text_atomic
from harness.errors import UserError


def example_experiment_text() -> str:
    return resources.files("harness.config").joinpath("example.yaml").read_text(encoding="utf-8")


def init(
    out: Path = typer.Option(Path("experiment.yaml"), "--out", "-o", help="Where to write the example."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write an example experiment file (tiny built-in model and data, runs on a CPU)."""
    if out.exists() and not force:
        raise UserError(f"{out}: already exists; pass --force to overwrite or choose another --out")
    write_text_atomic(out, example_experiment_text())
    typer.echo(f"wrote {out}; check it with `atax config check {out}`")
