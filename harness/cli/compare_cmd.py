"""`atax compare A B --benchmark NAME`: every paired test between two methods (or checkpoints) on one benchmark."""

from __future__ import annotations

from pathlib import Path

import typer


def compare(
    a: str = typer.Argument(..., metavar="A", help="Method row name (as in `atax table`) or checkpoint key."),
    b: str = typer.Argument(..., metavar="B", help="Method row name or checkpoint key to compare against."),
    benchmark: str = typer.Option(..., "--benchmark", help="Benchmark name as stored (e.g. mmlu, gsm8k)."),
    results: Path = typer.Option(..., "--results", help="Results directory (holding results.sqlite)."),
    experiment: str | None = typer.Option(None, "--experiment", help="Only this experiment's runs."),
    seed: list[int] = typer.Option([], "--seed", help="Only these training seeds (repeatable); default: all, "
                                   "paired by seed."),
    n_resamples: int = typer.Option(10000, "--resamples", help="Bootstrap and permutation resamples."),
    rng_seed: int = typer.Option(0, "--rng-seed", help="Seed of the resampling."),
) -> None:
    """Print McNemar (0/1 items), paired bootstrap with CI, sign-flip permutation, Wilcoxon, and the seed-level test."""
    from harness.errors import UserError
    from harness.stats.compare import compare as run_compare
    from harness.stats.compare import format_comparison
    from harness.stats.joins import primary_runs, runs_named
    from harness.store import RESULTS_DB_NAME, ResultsStore

    if not (results / RESULTS_DB_NAME).is_file():
        raise UserError(f"--results: no {RESULTS_DB_NAME} in {results}; give the experiment's results directory")
    with ResultsStore.open(results) as store, store.snapshot():
        runs = primary_runs(store, experiment=experiment, benchmark=benchmark)
        runs_a, runs_b = runs_named(runs, a, benchmark), runs_named(runs, b, benchmark)
        if seed:
            runs_a = [r for r in runs_a if r.seed in seed or r.seed is None]
            runs_b = [r for r in runs_b if r.seed in seed or r.seed is None]
            if not runs_a or not runs_b:
                raise UserError(f"--seed {', '.join(map(str, seed))}: {a if not runs_a else b!r} has no such seed "
                                f"on {benchmark}")
        typer.echo(format_comparison(run_compare(store, runs_a, runs_b, n_resamples, rng_seed)))
