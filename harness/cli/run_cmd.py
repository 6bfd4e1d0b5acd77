"""`atax run` (the whole comparison) and `atax status` (what is done, pending, failed)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from harness.errors import UserError


def _only(values: list[str] | None) -> set[str] | None:
    if not values:
        return None
    names = set()
    for value in values:
        key, _, name = value.partition("=")
        if key != "method" or not name:
            raise UserError(f"--only: expected method=NAME (got {value!r})")
        names.add(name)
    return names


def _executor(name: str, options: dict, results_dir: Path):
    from pydantic import ValidationError

    from harness import registry

    cls = registry.executors.get(name)
    try:
        parsed = cls.Options.model_validate(options)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise UserError(f"executor.options.{'.'.join(map(str, error['loc']))}: {error['msg']}") from None
    return cls(parsed, results_dir)


def _rerun(values: list[str] | None, experiment) -> object:
    from harness.pipeline.scheduler import Rerun

    methods, suites, everything = set(), set(), False
    for value in values or []:
        key, _, name = value.partition("=")
        if value == "all":
            everything = True
        elif key == "method" and name:
            methods.add(name)
        elif key == "suite" and name:
            suites.add(name)
        else:
            raise UserError(f"--rerun: expected method=NAME, suite=NAME or all (got {value!r})")
    unknown = (methods - {m.row_name for m in experiment.methods} - {m.name for m in experiment.methods}
               - {"base"}) | (suites - {s.name for s in experiment.suites})
    if unknown:
        raise UserError(f"--rerun: {', '.join(sorted(unknown))} is not a method or suite of the experiment")
    return Rerun(frozenset(methods), frozenset(suites), everything)


def run(
    experiment_file: Path = typer.Argument(..., help="Experiment YAML file."),
    results: Path | None = typer.Option(None, "--results", help="Results directory (default: the experiment's)."),
    executor: str | None = typer.Option(None, "--executor", help="local, ray or slurm (default: the experiment's)."),
    only: list[str] | None = typer.Option(None, "--only", help="Only this method (method=NAME); repeatable."),
    rerun: list[str] | None = typer.Option(None, "--rerun", help="Redo these finished jobs: method=NAME (its plan, "
                                           "training, combine, evals), suite=NAME (its evals) or all; repeatable."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the jobs and a cost estimate; run nothing."),
    keep_going: bool = typer.Option(True, "--keep-going/--stop-on-failure", help="Run independent jobs past a failure."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Run the whole experiment: train every method x seed, evaluate every checkpoint, write the report."""
    from harness.config import load_experiment

    experiment = load_experiment(experiment_file)
    results_dir = (results or experiment.results_dir).resolve()
    selected = _only(only)
    redo = _rerun(rerun, experiment)
    if selected is not None:
        unknown = selected - {m.row_name for m in experiment.methods} - {m.name for m in experiment.methods}
        if unknown:
            raise UserError(f"--only: {', '.join(sorted(unknown))} is not a method of {experiment_file}")
    if dry_run:
        from harness.pipeline.dryrun import dry_run as list_jobs

        lines, cost = list_jobs(experiment, experiment_file.resolve(), results_dir, selected)
        for line in lines:
            typer.echo(f"{'done   ' if line.done else 'pending'}  {line.kind:<8} {line.label}")
        typer.echo(f"{len(lines)} jobs; {cost}")
        return
    import sqlite3

    from harness.store import ResultsStore

    with ResultsStore.open(results_dir) as store:  # a broken store is found before any work starts
        store.check_ready_to_write()
    try:
        graph = _run_jobs(experiment, experiment_file, results_dir, executor, selected, keep_going, quiet, redo)
    except sqlite3.DatabaseError as exc:
        raise UserError(f"results database {results_dir / 'results.sqlite'}: {exc}; check the disk, or move it "
                        "away and run again") from None
    _print_report(experiment, results_dir, graph)
    if graph.failed:
        for key, error in graph.failed.items():
            typer.echo(f"failed: {graph.jobs[key].label}: {error.splitlines()[0]}", err=True)
        raise typer.Exit(1)


def _run_jobs(experiment, experiment_file: Path, results_dir: Path, executor: str | None, selected, keep_going: bool,
              quiet: bool, redo):
    from harness.pipeline.display import RunDisplay
    from harness.pipeline.scheduler import run_graph

    name = executor or experiment.executor.name
    options = experiment.executor.options if executor in (None, experiment.executor.name) else {}
    runner = _executor(name, dict(options), results_dir)
    display = RunDisplay(quiet, log_path=results_dir / "run.log")
    try:
        return run_graph(experiment, experiment_file.resolve(), results_dir, runner, selected, keep_going,
                         display.on_event, redo)
    finally:
        # The display first: closing the runner may wait on a job process, and after Ctrl-C the
        # terminal must be restored (cursor shown) even when the interrupt watchdog ends that wait.
        display.close()
        runner.close()


def _print_report(experiment, results_dir: Path, graph) -> None:
    """This experiment's own table, from the store (another experiment sharing the directory has its own)."""
    from harness.pipeline.report import report_dir, table_markdown

    if any(graph.jobs[key].kind == "report" for key in graph.done):
        typer.echo(table_markdown(experiment, results_dir))
        typer.echo(f"report: {report_dir(results_dir, experiment.name)}")


def status(
    experiment_file: Path = typer.Argument(..., help="Experiment YAML file."),
    results: Path | None = typer.Option(None, "--results", help="Results directory (default: the experiment's)."),
    as_json: bool = typer.Option(False, "--json", help='Print {"done": n, "pending": n, "failed": n, ...}.'),
) -> None:
    """Show which jobs of the experiment are done, pending or failed (with their errors), and which
    pending ones ran before with other code versions or have damaged outputs."""
    from harness.config import load_experiment
    from harness.pipeline.status import experiment_status

    experiment = load_experiment(experiment_file)
    results_dir = (results or experiment.results_dir).resolve()
    report = experiment_status(experiment, experiment_file.resolve(), results_dir)
    if as_json:
        typer.echo(json.dumps(report.counts()))
        return
    for line in report.lines():
        typer.echo(line)
    counts = report.counts()
    typer.echo(f"{counts['done']} done, {counts['pending']} pending, {counts['failed']} failed "
               "(jobs after a plan or combine become known once it has run)")
