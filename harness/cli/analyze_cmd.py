"""`atax analyze`: the pilot study. `loss-dynamics` trains one continuous run portion by portion and
measures train/validation loss reductions (Figures 4-6); `sweep` redraws the data-size curves of an
experiment's `sweep:` rows from the store (Figures 1-3; `atax run` trains and draws them too).
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import typer

app = typer.Typer(help="The pilot study: data-size curves and train/validation loss dynamics.",
                  no_args_is_help=True)


@app.command("loss-dynamics")
def loss_dynamics(
    config: Path = typer.Option(..., "--config", "-c", help="Experiment YAML file (model, data, training protocol)."),
    portions: int = typer.Option(10, "--portions", "-p", help="P: equal random portions; one is the validation "
                                                              "portion, the model trains on the other P-1 in turn."),
    train_sample: int | None = typer.Option(None, "--train-sample", help="Examples in the fixed training sample "
                                                                         "(default: the validation portion's size)."),
    min_count: int = typer.Option(5, "--min-count", help="Occurrences a token type needs in the training sample and "
                                                         "in the validation portion to enter ρ."),
    top_k: int = typer.Option(20, "--top-k", help="Representative tokens listed per stage."),
    ratio_eps: float = typer.Option(1e-4, "--ratio-eps", help="The ratio is null when |ΔL_val| < this (nats)."),
    seed: int | None = typer.Option(None, "--seed", help="Split, order and LoRA init seed (default: the "
                                                         "experiment's first seed)."),
    results: Path | None = typer.Option(None, "--results", help="Results directory (default: the experiment's)."),
    force: bool = typer.Option(False, "--force", help="Recompute even if this exact study is stored."),
    as_json: bool = typer.Option(False, "--json", help="Print the study's JSON instead of the summary."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train on P-1 portions one after another; after each, ΔL_train, ΔL_val, their ratio and per-token ρ."""
    from harness import __version__
    from harness.analyze.dynamics_report import record_curves, write_outputs
    from harness.analyze.loss_dynamics import ANALYSIS_VERSION, DynamicsOptions, run_loss_dynamics
    from harness.atomic import atomic_dir
    from harness.config import load_experiment
    from harness.keys import content_key
    from harness.progress import make_progress

    options = DynamicsOptions(portions, train_sample, min_count, top_k, ratio_eps)
    options.check()  # before loading anything: a bad option is a one-line error at once
    experiment = load_experiment(config)
    options = replace(options, seed=experiment.seeds[0] if seed is None else seed)
    results_dir = (results or experiment.results_dir).resolve()
    key = content_key({"kind": "loss-dynamics", "base_model": experiment.base_model.model_dump(mode="json"),
                       "data": experiment.data.model_dump(mode="json"),
                       "training": experiment.training.model_dump(mode="json"), "options": asdict(options),
                       "version": ANALYSIS_VERSION})
    out = results_dir / "analysis" / "loss-dynamics" / key
    done = out / "loss-dynamics.json"
    if force or not done.is_file():
        run = run_loss_dynamics(experiment, options, make_progress(quiet, "loss {task.fields[loss]}"))
        header = {"key": key, "run_key": f"loss-dynamics:{key}", "experiment": experiment.name,
                  "base_model": experiment.base_model.model_dump(mode="json"),
                  "data_source": experiment.data.source, "atax": __version__}
        with atomic_dir(out) as tmp:
            write_outputs(run, options, tmp, header)
    result = json.loads(done.read_text(encoding="utf-8"))
    record_curves(results_dir, result["run_key"], result)  # idempotent: a reused study is in the store too
    if as_json:
        typer.echo(json.dumps(result, indent=1, ensure_ascii=False))
        return
    typer.echo(result["summary"])
    typer.echo(f"loss dynamics: {out} (store curves: loss-dynamics:{key})")


@app.command("sweep")
def sweep(
    config: Path = typer.Option(..., "--config", "-c", help="Experiment YAML file with a sweep section."),
    results: Path | None = typer.Option(None, "--results", help="Results directory (default: the experiment's)."),
    out: Path | None = typer.Option(None, "--out", help="Output directory (default: <results>/analysis/sweep)."),
) -> None:
    """Redraw score vs. data size per benchmark (one line per method, 95% bands) from the store."""
    from harness.analyze.sweep_figure import write_sweep_figure
    from harness.config import load_experiment
    from harness.errors import UserError

    experiment = load_experiment(config)
    if experiment.sweep is None:
        raise UserError(f"{config}: has no sweep section; add `sweep: {{data_fraction: [0.1, 0.25, 0.5, 1.0]}}`")
    results_dir = (results or experiment.results_dir).resolve()
    written = write_sweep_figure(experiment, results_dir, out or results_dir / "analysis" / "sweep")
    if not written["points"]:
        raise UserError(f"{results_dir}: {written['note']}; run `atax run {config}` first")
    typer.echo(f"{written['points']} points: {', '.join(written['figure'])}")
