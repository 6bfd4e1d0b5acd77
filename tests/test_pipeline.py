"""The experiment pipeline: a DAG of content-addressed jobs that skips finished work, keeps going
past failures, reports its state, and runs on the local, Ray and submitit executors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from conftest import run_atax

TRAINING = {"batch_size": 8, "max_seq_len": 160, "max_steps": 2, "scheduler": {"warmup_steps": 1}}


def write_experiment(directory: Path, methods: list, suites: list | None = None, **extra) -> Path:
    exp = {"name": "pipe", "base_model": {"id": "builtin:tiny-llama"},
           "data": {"source": "builtin:toy-instructions", "max_samples": 48}, "training": TRAINING,
           "methods": methods, "suites": suites or [], "results_dir": "res", **extra}
    path = directory / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def markers(results: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime for p in (results / "jobs").glob("*.done.json")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    exp = write_experiment(root, ["vanilla", {"name": "dtm", "options": {"k": 2}},
                                  {"name": "scaled_vanilla", "options": {"alphas": [0.5, 1.0]}}])
    result = run_atax("run", str(exp), "--quiet", timeout=1800)  # 10 jobs; a shared CI machine can be slow
    assert result.returncode == 0, result.stderr
    return root, exp


def test_run_trains_every_method_and_records_jobs(finished):
    root, exp = finished
    results = root / "res"
    # plans 3, trains 3 (scaled_vanilla reuses vanilla's run), combines 3, report 1
    assert len(markers(results)) == 10
    assert (results / "checkpoints" / "dtm-seed0" / "checkpoint.json").is_file()
    assert sorted(p.name for p in (results / "checkpoints" / "scaled_vanilla-seed0").iterdir()) == ["alpha-0.5",
                                                                                                    "alpha-1"]
    status = run_atax("status", str(exp), "--json")
    assert json.loads(status.stdout) == {"done": 10, "pending": 0, "failed": 0, "code_changed": 0, "damaged": 0}


def test_second_run_reruns_nothing(finished):
    root, exp = finished
    before = markers(root / "res")
    started = time.monotonic()
    again = run_atax("run", str(exp), "--quiet")
    assert again.returncode == 0, again.stderr
    assert markers(root / "res") == before
    assert time.monotonic() - started < 30


def test_changing_only_the_merge_retrains_nothing(finished, tmp_path):
    root, _ = finished
    exp = write_experiment(root, ["vanilla", {"name": "dtm", "options": {"k": 2, "merge": {"name": "ties"}}},
                                  {"name": "scaled_vanilla", "options": {"alphas": [0.5, 1.0]}}])
    runs_before = {p.name: p.stat().st_mtime for p in (root / "res" / "runs").iterdir()}
    result = run_atax("run", str(exp), "--quiet", timeout=600)
    assert result.returncode == 0, result.stderr
    assert {p.name: p.stat().st_mtime for p in (root / "res" / "runs").iterdir()} == runs_before
    manifest = json.loads((root / "res" / "checkpoints" / "dtm-seed0" / "checkpoint.json").read_text())
    assert manifest["merge"]["op"] == "ties"


def test_dry_run_lists_jobs_and_marks_done_ones(finished):
    root, exp = finished
    result = run_atax("run", str(exp), "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "done     plan     plan dtm seed 0" in lines
    assert "done     train    train dtm seed 0 run 2/2" in lines
    assert lines[-1].startswith("11 jobs; at most 4 training runs (runs that methods share are trained once) of ")


def test_failed_job_is_recorded_and_others_keep_going(tmp_path):
    exp = write_experiment(tmp_path, ["vanilla", {"name": "replay", "options": {"corpus": "missing.jsonl"}}])
    result = run_atax("run", str(exp), "--quiet", timeout=600)
    assert result.returncode == 1
    assert f"failed: train replay seed 0 main: corpus: file '{tmp_path / 'missing.jsonl'}' not found" in result.stderr
    assert (tmp_path / "res" / "checkpoints").exists() or list((tmp_path / "res" / "runs").glob("*/checkpoint.json"))
    status = json.loads(run_atax("status", str(exp), "--json").stdout)
    assert status["failed"] == 1 and status["done"] >= 3  # vanilla's plan, train, combine and replay's plan
    text = run_atax("status", str(exp)).stdout
    assert "failed   train replay seed 0 main: corpus: file" in text


def test_only_selects_methods_and_rejects_unknown(tmp_path):
    exp = write_experiment(tmp_path, ["vanilla", {"name": "dtm", "options": {"k": 2}}])
    bad = run_atax("run", str(exp), "--only", "method=ewc")
    assert bad.returncode == 2 and bad.stderr == f"error: --only: ewc is not a method of {exp}\n"
    dry = run_atax("run", str(exp), "--only", "method=vanilla", "--dry-run").stdout
    assert "dtm" not in dry and "plan vanilla seed 0" in dry


@pytest.mark.parametrize("executor,options", [("ray", {"num_cpus": 2}), ("slurm", {"cluster": "local"})])
def test_other_executors_run_the_dag(tmp_path, executor, options):
    pytest.importorskip("ray" if executor == "ray" else "submitit")
    exp = write_experiment(tmp_path, [{"name": "dtm", "options": {"k": 2}}],
                           executor={"name": executor, "options": options})
    result = run_atax("run", str(exp), "--quiet", timeout=600)
    assert result.returncode == 0, result.stderr + result.stdout
    assert len(markers(tmp_path / "res")) == 5  # plan, 2 trains, combine, report
    assert (tmp_path / "res" / "checkpoints" / "dtm-seed0" / "checkpoint.json").is_file()


def test_experiments_sharing_a_results_dir_each_get_their_rows_without_re_evaluating(tmp_path):
    """A new experiment beside an old one (adding a method to the leaderboard) reuses vanilla's
    checkpoint and evaluation, and its own table and report still hold vanilla and the base model."""
    knowledge = [{"name": "knowledge", "options": {"data_dir": "builtin:toy-knowledge",
                                                   "benchmarks": ["arc_challenge", "openbookqa"]}}]
    first = write_experiment(tmp_path, ["vanilla"], knowledge, name="first")
    second = tmp_path / "second.yaml"
    second.write_text(yaml.safe_dump({**yaml.safe_load(first.read_text()), "name": "second",
                                      "methods": ["vanilla", "l2"]}))
    for exp in (first, second):
        result = run_atax("run", str(exp), "--quiet", timeout=600)
        assert result.returncode == 0, result.stderr

    from harness.store import ResultsStore

    with ResultsStore.open(tmp_path / "res") as store:
        runs = {(r.experiment, r.method, r.benchmark): r for r in store.scores()}
    for row in ("base", "vanilla"):
        for benchmark in ("arc_challenge", "openbookqa"):
            old, new = runs[("first", row, benchmark)], runs[("second", row, benchmark)]
            assert new.run_meta["copied_from_eval"] == old.eval_id  # copied, not evaluated again
            assert (new.checkpoint, new.value) == (old.checkpoint, old.value)
    assert "copied_from_eval" not in runs[("second", "l2", "arc_challenge")].run_meta
    table = run_atax("table", "--results", str(tmp_path / "res"), "--experiment", "second")
    assert table.returncode == 0, table.stderr
    assert [line.split("|")[1].strip() for line in table.stdout.splitlines() if line.startswith("| ")][1:] == [
        "base", "vanilla", "l2"]
    # each experiment has its own report, and a no-op rerun of the first prints the first's table
    assert (tmp_path / "res" / "reports" / "first" / "index.html").is_file()
    assert (tmp_path / "res" / "reports" / "second" / "index.html").is_file()
    again = run_atax("run", str(first), "--quiet", timeout=600)
    assert again.returncode == 0, again.stderr
    rows = [line.split("|")[1].strip() for line in again.stdout.splitlines() if line.startswith("| ")][1:]
    assert rows[:2] == ["base", "vanilla"] and "l2" not in rows
    compare = run_atax("compare", "vanilla", "base", "--benchmark", "arc_challenge", "--results",
                       str(tmp_path / "res"))
    assert compare.returncode == 0, compare.stderr
    assert "over 2 run" not in compare.stdout  # the copy in `second` is not a second run of seed 0

    # a changed row: its new checkpoint's evals replace the old checkpoint's, so nothing is shadowed
    second.write_text(yaml.safe_dump({**yaml.safe_load(second.read_text()),
                                      "methods": ["vanilla", {"name": "l2", "options": {"lambda": 0.5}}]}))
    rerun = run_atax("run", str(second), "--quiet", timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "several eval runs" not in rerun.stdout + rerun.stderr
    with ResultsStore.open(tmp_path / "res") as store:
        l2 = [r for r in store.scores(experiment="second", method="l2", metric="acc")]
    assert sorted(r.benchmark for r in l2) == ["arc_challenge", "openbookqa"]
    assert l2[0].checkpoint != runs[("second", "l2", "arc_challenge")].checkpoint
