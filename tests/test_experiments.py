"""Every shipped experiment file and `atax init`'s example validate; the paper experiment's dry run
lists every job offline, without touching a GPU or the hub."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import run_atax

from harness.cli.init import example_experiment_text
from harness.config import load_experiment

EXPERIMENTS = sorted((Path(__file__).parent.parent / "experiments").glob("*.yaml"))


def test_the_shipped_experiments_are_there():
    assert {p.name for p in EXPERIMENTS} >= {"quickstart.yaml", "paper_llama2_7b.yaml", "paper_ablations.yaml"}


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.name for p in EXPERIMENTS])
def test_shipped_experiment_validates(path):
    experiment = load_experiment(path)
    assert experiment.methods and experiment.seeds


def test_init_example_validates(tmp_path):
    (tmp_path / "exp.yaml").write_text(example_experiment_text())
    assert len(load_experiment(tmp_path / "exp.yaml").methods) == 11


def test_paper_dry_run_lists_every_job_offline(tmp_path):
    paper = Path(__file__).parent.parent / "experiments" / "paper_llama2_7b.yaml"
    result = run_atax("run", str(paper), "--dry-run", "--results", str(tmp_path / "res"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for method in ("vanilla", "l2", "ewc", "replay", "uniform_soup", "loramoe", "deita", "dtm", "data_order_merge",
                   "scaled_vanilla"):
        assert f"pending  plan     plan {method} seed 0" in lines
    assert "pending  train    train dtm seed 0 run 4/4" in lines
    assert "pending  eval     eval base on mt_bench" in lines
    assert "GPU-hours" in lines[-1] and "7.0B model" in lines[-1]
    # 9 rows + 2 x 3 more checkpoints + base; the nine benchmarks + MT-bench + Vicuna-bench answers: 9.7 min
    assert ("~3.0 GPU-hours of evaluation (18 checkpoints x 9.7 min for a 7B, scaled to this one;"
            in lines[-1])
    assert not (tmp_path / "res" / "runs").exists()  # nothing was trained


def test_dry_run_counts_the_samples_max_samples_keeps(tmp_path):
    study = Path(__file__).parent.parent / "experiments" / "smollm2_cpu.yaml"
    result = run_atax("run", str(study), "--dry-run", "--results", str(tmp_path / "res"))
    assert result.returncode == 0, result.stderr
    last = result.stdout.splitlines()[-1]
    assert "~64k tokens on a 135M model" in last and "160 of 326,154 samples (TULU-v2-mix)" in last, last


def test_dry_run_evaluation_estimate_follows_limits_and_names_what_it_leaves_out(tmp_path):
    from harness.pipeline.dryrun import EVAL_SECONDS_7B_H100, FULL_ITEMS, _eval_estimate
    from suites.knowledge.benchmarks import DEFAULT_BENCHMARKS

    assert tuple(FULL_ITEMS) == DEFAULT_BENCHMARKS  # no benchmarks option: the nine

    exp = {"name": "est", "base_model": {"id": "builtin:tiny-llama"},
           "data": {"source": "builtin:toy-instructions"}, "methods": ["vanilla"],
           "results_dir": str(tmp_path / "res"),
           "suites": [{"name": "knowledge",
                       "options": {"benchmarks": ["mmlu", "race_middle"], "limit": 100}}]}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    text = _eval_estimate(load_experiment(tmp_path / "exp.yaml"), 2, 6.74e9)
    minutes = EVAL_SECONDS_7B_H100["mmlu"] * 100 * 57 / 14042 / 60  # 100 per subject of 14,042 items
    assert text.startswith(f"~{2 * minutes / 60:,.1f} GPU-hours of evaluation (2 checkpoints x "
                           f"{minutes:.1f} min")
    assert text.endswith("; not counted: race_middle)")
