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
# Seconds to evaluate one 7B checkpoint on one H100, on paper (bench/eval_cost_on_paper.py, a 32k
# sentencepiece vocabulary: log-likelihoods through the hf scorer, generations through vLLM, 200 new
# tokens a prompt), scaled with the parameter count; judged suites: their answers only (80 MT-bench
# questions x 2 turns, 80 Vicuna-bench ones at GSM8K's decode rate), not the judge's calls.
EVAL_SECONDS_7B_H100 = {"gsm8k": 82, "mmlu": 57, "bbh": 374, "arc_challenge": 2, "openbookqa": 1,
                        "race": 13, "truthfulqa": 2, "humaneval": 4, "mbpp": 32, "mt_bench": 10,
                        "vicuna_bench": 5}
EVAL_PARAMS = 6.74e9
# Scored items of the full test sets and lm-eval tasks per benchmark (a --limit applies per task); the
# knowledge suite's default benchmarks, the paper's nine.
FULL_ITEMS = {"gsm8k": (1319, 1), "mmlu": (14042, 57), "bbh": (6511, 27),
              "arc_challenge": (1172, 1), "openbookqa": (500, 1), "race": (1045, 1), "truthfulqa": (817, 1),
              "humaneval": (164, 1), "mbpp": (500, 1)}


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
    evaluations = 1  # checkpoints each suite evaluates: the base model's, then every row's
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
            evaluations += variants
            lines.append(Line("combine", f"combine {entry.row_name} seed {seed}", False))
            for suite in experiment.suites:
                lines.append(Line("eval", f"eval {entry.row_name} seed {seed} on {suite.name}"
                                          + (f" ({variants} checkpoints)" if variants > 1 else ""), False))
    for suite in experiment.suites:
        lines.append(Line("eval", f"eval base on {suite.name}", False))
    lines.append(Line("report", "report", False))
    return lines, cost_estimate(experiment, train_runs, evaluations)


def cost_estimate(experiment: Experiment, train_runs: int, evaluations: int = 0) -> str:
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
            f"~{hours:,.1f} GPU-hours of training (A100 at 40% utilisation; {assumed}); "
            + _eval_estimate(experiment, evaluations, params))


def _eval_estimate(experiment: Experiment, evaluations: int, params: float) -> str:
    """Evaluation GPU time on paper, or what it leaves out."""
    seconds = 0.0
    unknown = []
    for suite in experiment.suites:
        if suite.name == "knowledge":
            limit = suite.options.get("limit")
            for benchmark in suite.options.get("benchmarks") or FULL_ITEMS:
                if benchmark not in FULL_ITEMS:
                    unknown.append(benchmark)
                    continue
                items, tasks = FULL_ITEMS[benchmark]
                share = min(1.0, limit * tasks / items) if limit else 1.0
                seconds += EVAL_SECONDS_7B_H100[benchmark] * share
        elif suite.name in EVAL_SECONDS_7B_H100:
            seconds += EVAL_SECONDS_7B_H100[suite.name]
        else:
            unknown.append(suite.name)
    hours = evaluations * seconds * params / EVAL_PARAMS / 3600
    left = f"; not counted: {', '.join(unknown)}" if unknown else ""
    return (f"~{hours:,.1f} GPU-hours of evaluation ({evaluations} checkpoints x {seconds / 60:.1f} min for a "
            f"7B, scaled to this one; one H100 on paper, bench/eval_cost_on_paper.py; judge calls not "
            f"included{left})")


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
