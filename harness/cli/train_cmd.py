"""`atax train`: train one method of an experiment (plan -> runs -> combine) and record it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import typer

from harness.atomic import atomic_dir
from harness.config import load_experiment
from harness.errors import UserError
from harness.progress import make_progress


def train(
    config: Path = typer.Option(..., "--config", "-c", help="Experiment YAML file."),
    method: str = typer.Option(..., "--method", "-m", help="Method of the experiment (its label or name)."),
    seed: int | None = typer.Option(None, "--seed", help="Train this seed only (default: every seed)."),
    out: Path | None = typer.Option(None, "--out", help="Also copy the final checkpoint to this directory."),
    results: Path | None = typer.Option(None, "--results", help="Results directory (default: the experiment's)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (for CI and logs)."),
) -> None:
    """Train METHOD of the experiment; prints the final checkpoint directory."""
    from harness.train.runner import find_method, train_method

    experiment = load_experiment(config)
    entry = find_method(experiment, method)
    out = out.resolve() if out is not None else None
    results = results.resolve() if results is not None else None
    # Relative paths inside an experiment (method options included) are relative to its file.
    os.chdir(config.resolve().parent)
    seeds = [seed] if seed is not None else list(experiment.seeds)
    if out is not None and len(seeds) > 1:
        raise UserError(f"--out: the experiment has {len(seeds)} seeds; pick one with --seed")
    results_dir = results or experiment.results_dir
    for s in seeds:
        result = train_method(experiment, entry, s, results_dir,
                              make_progress(quiet, "loss {task.fields[loss]} · {task.fields[tok_s]} tok/s"))
        if out is not None and len(result.checkpoints) > 1:
            raise UserError(f"--out: {entry.row_name} makes {len(result.checkpoints)} checkpoints; "
                            "they are under the results directory")
        for checkpoint in result.checkpoints:
            path = checkpoint.path
            if out is not None:
                with atomic_dir(out) as tmp:
                    shutil.copytree(path, tmp, dirs_exist_ok=True)
                path = out
            variant = checkpoint.manifest.get("variant")
            loss = checkpoint.manifest.get("metrics", {}).get("final_loss")
            loss_text = f", final loss {loss:.4f}" if isinstance(loss, float) else ""
            name = f"{entry.row_name}[{variant}]" if variant else entry.row_name
            typer.echo(f"{name} seed {s}: {path}{loss_text}")
