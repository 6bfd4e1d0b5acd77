"""Plug-in commands (`atax.commands` entry points): DTM's `atax disperse` comes from dtm_method, the core
names no plug-in, and a broken or clashing plug-in command breaks only itself."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from conftest import run_atax
from typer.testing import CliRunner

from harness.cli.plugin_commands import add_plugin_commands, commands

HARNESS = Path(__file__).parent.parent / "harness"


def test_disperse_is_dtms_command_and_the_core_names_no_plugin() -> None:
    result = run_atax("--help")
    assert result.returncode == 0 and re.search(r"disperse\s+Disperse DATA into K clusters", result.stdout)
    imports = re.compile(r"^\s*(from|import)\s+(dtm_method|baselines|suites)\b", re.MULTILINE)
    offenders = [str(p) for p in HARNESS.rglob("*.py") if imports.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_plugin_commands_are_added_and_a_broken_or_clashing_one_breaks_only_itself(capsys) -> None:
    app = typer.Typer()

    @app.command("train")
    def train() -> None:
        typer.echo("built-in train")

    def hello(name: str = typer.Option("world", "--name")) -> None:
        typer.echo(f"hello {name}")

    commands.register("hello", hello)
    commands.register("train", hello)
    commands.register("broken", "no_such_module_xyz:command")
    try:
        added = add_plugin_commands(app)
    finally:
        for name in ("hello", "train", "broken"):
            commands.unregister(name)
    assert {"hello", "broken", "disperse"} <= set(added) and "train" not in added
    assert "command 'train' from a plug-in clashes with atax's own 'train'" in capsys.readouterr().err
    runner = CliRunner()
    assert runner.invoke(app, ["hello", "--name", "atax"]).stdout == "hello atax\n"
    assert runner.invoke(app, ["train"]).stdout == "built-in train\n"
    broken = runner.invoke(app, ["broken"])
    assert broken.exit_code != 0 and "command 'broken' (registered by code as 'no_such_module_xyz:command') " \
                                      "cannot be loaded" in str(broken.exception)
