"""`atax run --dry-run`: every job the experiment implies, what is done, and a rough cost.

Nothing is planned or loaded: run counts come from each method's options (`planned_runs`,
`planned_variants`), so listing a 7B paper experiment touches neither a GPU nor the hub.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from harness.config import Experiment
from harness.config.checks import MAX_RUNS_PER_METHOD
from harness.errors import UserError
from harness.pipeline.graph import expand, plan_job
from harness.pipeline.jobs import outputs_of
from harness.pipeline.rows import experiment_rows, selected

TULU_FIRST_TURN_SAMPLES = 326_154  # the DTM paper's TULU-v2-mix size (first turns)
ASSUMED_TOKENS_PER_SAMPLE = 400  # TULU-v2 first turns: instruction 80-330 + response 15-430 tokens
GPU_FLOPS = 312e12 * 0.4  # A100 bf16 peak at 40 % utilisation


@dataclass(frozen=True)
class Line:
    kind: str
    label: str
    done: bool


def dry_run(experiment: Experiment, experiment_path: Path, results_dir: Path,
            only: set[str] | None = None) -> tuple[list[Line], str]:
    from harness.train.runner import build_method

    common = {"experiment": str(experiment_path), "results_dir": str(results_dir)}
    lines: list[Line] = []
    train_runs = 0
    for row in experiment_rows(experiment):  # the methods, or each method at each data size of a sweep
        if not selected(row, only):
            continue
        entry = row.entry
        method = build_method(entry)
        runs = getattr(method, "planned_runs", lambda: 1)()
        if runs > MAX_RUNS_PER_METHOD:  # an Experiment built without load_experiment: refuse before listing
            raise UserError(f"methods: {entry.row_name} plans {runs:,} training runs; "
                            f"at most {MAX_RUNS_PER_METHOD:,} per method")
        variants = getattr(method, "planned_variants", lambda: 1)()
        for seed in experiment.seeds:
            plan = plan_job(row, seed, common)
            planned = outputs_of(results_dir, plan.key)
            lines.append(Line("plan", plan.label, planned is not None))
            keys = [j.key for j in expand(plan, planned, experiment) if j.kind == "train"] if planned else []
            for i in range(runs):
                key = keys[i] if i < len(keys) else None
                done = key is not None and (results_dir / "runs" / key / "checkpoint.json").is_file()
                lines.append(Line("train", f"train {entry.row_name} seed {seed} run {i + 1}/{runs}", done))
            train_runs += runs
            lines.append(Line("combine", f"combine {entry.row_name} seed {seed}", False))
            for suite in experiment.suites:
                lines.append(Line("eval", f"eval {entry.row_name} seed {seed} on {suite.name}"
                                          + (f" ({variants} checkpoints)" if variants > 1 else ""), False))
    for suite in experiment.suites:
        lines.append(Line("eval", f"eval base on {suite.name}", False))
    lines.append(Line("report", "report", False))
    return lines, cost_estimate(experiment, train_runs)


def cost_estimate(experiment: Experiment, train_runs: int) -> str:
    samples, assumed = _n_samples(experiment)
    training = experiment.training
    if training.max_steps:
        tokens_per_run = training.max_steps * training.batch_size * ASSUMED_TOKENS_PER_SAMPLE
    else:
        tokens_per_run = samples * training.epochs * ASSUMED_TOKENS_PER_SAMPLE
    params = _n_params(experiment.base_model.id)
    if params is None:
        return f"{train_runs} training runs; cost unknown (cannot tell the size of {experiment.base_model.id})"
    hours = train_runs * 6 * params * tokens_per_run / GPU_FLOPS / 3600
    return (f"at most {train_runs} training runs (runs that methods share are trained once) of "
            f"~{_tokens(tokens_per_run)} tokens on a {_params(params)} model: "
            f"~{hours:,.1f} GPU-hours of training (A100 at 40% utilisation; {assumed}); evaluation not included")


def _tokens(n: float) -> str:
    return f"{n / 1e6:,.0f}M" if n >= 1e7 else f"{n / 1e6:,.1f}M" if n >= 1e5 else f"{n / 1e3:,.0f}k"


def _params(n: float) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:,.0f}M" if n >= 1e7 else f"{n / 1e6:.1f}M"


def _n_samples(experiment: Experiment) -> tuple[int, str]:
    data = experiment.data
    path = Path(data.source)
    if path.is_file() and path.suffix == ".jsonl":
        n = sum(1 for line in path.open(encoding="utf-8", errors="replace") if line.strip())
        source = f"{n:,} samples in {path.name}"
    elif data.source.startswith("builtin:"):
        n, source = 600, "600 built-in samples"
    else:
        n, source = TULU_FIRST_TURN_SAMPLES, f"assuming {TULU_FIRST_TURN_SAMPLES:,} samples (TULU-v2-mix)"
    used = min(n, data.max_samples or n, math.ceil(data.data_fraction * n))
    if used < n:
        source = f"{used:,} of {source.removeprefix('assuming ')} (max_samples / data_fraction)"
    return used, f"{source}, {ASSUMED_TOKENS_PER_SAMPLE} tokens each"


def _n_params(model_id: str) -> float | None:
    config = Path(model_id) / "config.json"
    if config.is_file():
        c = json.loads(config.read_text())
        h, layers, vocab = c.get("hidden_size"), c.get("num_hidden_layers"), c.get("vocab_size")
        inter = c.get("intermediate_size", 4 * (h or 0))
        if h and layers and vocab:
            return float(layers * (4 * h * h + 3 * h * inter) + 2 * vocab * h)
    if model_id.startswith("builtin:tiny"):
        return 0.6e6
    words = model_id.replace("-", " ").replace("_", " ")
    match = re.search(r"(\d+(?:\.\d+)?)\s*[bB]\b", words)
    if match is None:  # e.g. builtin:smollm2-135m-instruct
        millions = re.search(r"(\d+(?:\.\d+)?)\s*[mM]\b", words)
        return float(millions.group(1)) * 1e6 if millions else None
    return float(match.group(1)) * 1e9
