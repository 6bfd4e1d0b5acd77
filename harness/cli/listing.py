"""`atax methods` and `atax suites`: what is registered, with one-line descriptions."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from harness import registry

JsonFlag = typer.Option(False, "--json", help="Print a JSON list of {name, description}.")


def _show(reg: registry.Registry, as_json: bool) -> None:
    rows = reg.describe()
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo(f"No {reg.kind} is registered. Is atax installed (pip install -e .)?")
        return
    table = Table(show_header=True, header_style="bold")
    table.add_column(reg.kind)
    table.add_column("description")
    for row in rows:
        table.add_row(row["name"], row["description"])
    Console().print(table)


def methods(as_json: bool = JsonFlag) -> None:
    """List the registered training methods."""
    _show(registry.methods, as_json)


def suites(as_json: bool = JsonFlag) -> None:
    """List the registered evaluation suites."""
    _show(registry.suites, as_json)
