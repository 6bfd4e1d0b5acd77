"""`atax`: the command line. Commands live one per module; this file wires them together.

Imports stay light (no torch) so `atax --help` is instant; commands import what they need.
"""

from __future__ import annotations

import sys

import typer

from harness.cli import (
    analyze_cmd,
    compare_cmd,
    config_cmd,
    data_cmd,
    doctor,
    eval_cmd,
    init,
    interrupt,
    listing,
    merge_cmd,
    plugin_commands,
    report_cmd,
    run_cmd,
    serve_cmd,
    table_cmd,
    train_cmd,
)
from harness.errors import USER_ERROR_EXIT_CODE, UserError
from harness.fast_exit import exit_code, exit_now

app = typer.Typer(
    name="atax",
    help="The alignment-tax harness: train instruction-tuning methods, evaluate, compare.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.command("methods")(listing.methods)
app.command("suites")(listing.suites)
app.command("doctor")(doctor.doctor)
app.command("init")(init.init)
app.command("train")(train_cmd.train)
app.command("eval")(eval_cmd.eval_)
app.command("merge")(merge_cmd.merge)
app.command("run")(run_cmd.run)
app.command("status")(run_cmd.status)
app.command("table")(table_cmd.table)
app.command("compare")(compare_cmd.compare)
app.command("report")(report_cmd.report)
app.command("serve")(serve_cmd.serve)
app.add_typer(config_cmd.app, name="config")
app.add_typer(data_cmd.app, name="data")
app.add_typer(analyze_cmd.app, name="analyze")
# Last, so a plug-in cannot take a built-in name (see plugin_commands).
plugin_commands.add_plugin_commands(app)


def main() -> None:
    try:
        _main()
    except SystemExit as exc:
        if "torch" in sys.modules:  # a command that did real work: end without the ~1.3 s teardown
            exit_now(exit_code(exc))
        raise


def _main() -> None:
    interrupt.install()
    try:
        app()
    except UserError as exc:
        # Plain write, not rich: rich wraps long lines and the contract is one line.
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(USER_ERROR_EXIT_CODE)
    except interrupt.Interrupted as exc:
        interrupt.exit_interrupted(exc)
