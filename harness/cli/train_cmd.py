"""`atax train`: train one method of an experiment (plan -> runs -> combine) and record it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import typer

from harness.atomic import atomic_dir
from harness.checkpoint import Checkpoint
from harness.config import load_experiment
from harness.errors import UserError
from harness.progress import make_progress


def train(
    config: Path = typer.Option(..., "--config", "-c", help="Experiment YAML file."),
    method: str = typer.Option(..., "--method", "-m", help="Method of the experiment (its label or name)."),
    seed: int | None = typer.Option(None, "--seed", help="Train this seed only (default: every seed)."),
    out: Path | None = typer.Option(None, "--out", help="Also copy the final checkpoint to this directory (a method "
                                                        "that makes several, e.g. scaled_vanilla: each to "
                                                        "DIR/<variant>/)."),
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
        paths = _copy_out(result.checkpoints, out) if out is not None else [c.path for c in result.checkpoints]
        for checkpoint, path in zip(result.checkpoints, paths, strict=True):
            metrics = checkpoint.training.metrics if checkpoint.training is not None else {}
            loss = metrics.get("final_loss")
            loss_text = f", final loss {loss:.4f}" if isinstance(loss, float) else ""
            name = f"{entry.row_name}[{checkpoint.variant}]" if checkpoint.variant else entry.row_name
            typer.echo(f"{name} seed {s}: {path}{loss_text}")


def _copy_out(checkpoints: list[Checkpoint], out: Path) -> list[Path]:
    """Copy the final checkpoint to `out`, or, for a method that makes several (one per variant, e.g.
    scaled_vanilla's alphas), each to `out/<variant>/`; all at once, so `out` is never half-written."""
    if len(checkpoints) == 1:
        targets = [out]
    else:
        names = [c.variant or "" for c in checkpoints]
        if len(set(names)) != len(names) or not all(_safe_name(n) for n in names):
            raise UserError(f"--out: the method's {len(checkpoints)} checkpoints have no distinct variant names "
                            f"({', '.join(map(repr, names))}); copy them from {checkpoints[0].path.parent}")
        targets = [out / name for name in names]
    with atomic_dir(out) as tmp:
        for checkpoint, target in zip(checkpoints, targets, strict=True):
            shutil.copytree(checkpoint.path, tmp / target.relative_to(out), dirs_exist_ok=True)
    return targets


def _safe_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name
