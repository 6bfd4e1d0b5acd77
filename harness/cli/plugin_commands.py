"""Commands contributed by plug-ins: entry points in the `atax.commands` group name a typer command
function (`disperse = "dtm_method.commands:disperse"`), so a method can ship a command without the
core naming it. A plug-in's command module must import only what its signature needs (typer, pathlib)
and import heavy libraries inside the function, so `atax --help` stays free of torch.

A plug-in command that cannot be loaded, or whose name a built-in command already has, breaks only
itself: invoking it prints the one-line reason.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import typer

from harness.errors import UserError
from harness.registry import Registry

commands: Registry[Callable[..., Any]] = Registry("command", "atax.commands")


def add_plugin_commands(app: typer.Typer) -> list[str]:
    """Register every `atax.commands` entry on `app`; returns the names added."""
    taken = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    added = []
    for name in commands.names():
        if name in taken:  # the built-in keeps its name; say so rather than silently dropping the plug-in's
            sys.stderr.write(f"warning: command '{name}' from a plug-in clashes with atax's own '{name}' and is "
                             "ignored; uninstall the plug-in or register it under another name\n")
            continue
        try:
            function = commands.get(name)
            if not callable(function):
                raise UserError(f"command '{name}' is registered as {type(function).__name__}, not a function; "
                                "fix the plug-in that registers it")
        except UserError as exc:
            function = _broken(exc)
        app.command(name)(function)
        added.append(name)
    return added


def _broken(error: UserError) -> Callable[..., None]:
    def broken() -> None:
        """(unavailable: this plug-in command cannot be loaded; run it to see why)"""
        raise error

    return broken
