"""The data-size sweep: `sweep:` expands every method into one row per data size on nested subsets,
`atax run` trains and evaluates them like any method, and the report draws score vs. data size per
benchmark with one point per size; bad sweeps are one-line errors."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run_atax
from pipeline_fixtures import InProcessExecutor

from harness.analyze.sweep import sweep_rows
from harness.config import load_experiment
from harness.errors import UserError
from harness.pipeline.report import report_dir
from harness.train.runner import method_data

TRAINING = {"batch_size": 8, "max_seq_len": 160, "max_steps": 1, "scheduler": {"warmup_steps": 1}}
KNOWLEDGE = {"name": "knowledge", "options": {"data_dir": "builtin:toy-knowledge", "limit": 3,
                                              "benchmarks": ["arc_challenge", "openbookqa"]}}


def write_experiment(directory: Path, sweep: Any, data: dict | None = None, **extra: Any) -> Path:
    exp = {"name": "sweep", "base_model": {"id": "builtin:tiny-llama"},
           "data": {"source": "builtin:toy-instructions", **({"max_samples": 40} if data is None else data)}, "training": TRAINING,
           "methods": ["vanilla"], "sweep": sweep, "backend": {"name": "hf"}, "results_dir": "res", **extra}
    path = directory / "exp.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


def keys(records: list) -> set[tuple[str, str, str]]:
    return {(r.instruction, r.input, r.output) for r in records}


@pytest.mark.parametrize("sweep, data, sizes", [
    ({"data_fraction": [0.1, 0.25, 0.5, 1.0]}, {"max_samples": 40}, [4, 10, 20, 40]),
    ({"data_fraction": [0.3, 0.7]}, {}, [180, 420]),  # fractions of all 600 toy instructions
    ({"max_samples": [5, 17, 30]}, {"max_samples": 30, "seed": 7}, [5, 17, 30]),
])
def test_rows_train_on_nested_subsets(tmp_path: Path, sweep: dict, data: dict, sizes: list[int]) -> None:
    experiment = load_experiment(write_experiment(tmp_path, sweep, data, methods=["vanilla", "l2"]))
    rows = sweep_rows(experiment)
    labels = [f"{m}@{p:g}" for m in ("vanilla", "l2") for p in sweep.get("data_fraction") or sweep["max_samples"]]
    assert [r.entry.row_name for r in rows] == labels
    subsets = [keys(method_data(r.experiment).records) for r in rows if r.source.name == "vanilla"]
    assert [len(s) for s in subsets] == sizes
    assert all(small < large for small, large in zip(subsets[:-1], subsets[1:], strict=True))  # nested
    assert keys(method_data(rows[-1].experiment).records) == subsets[-1]  # every method sees the same data


@pytest.mark.parametrize("sweep, message", [
    ({"data_fraction": [0.5, 0.25]}, "sweep.data_fraction: must be in ascending order (0.25 comes after 0.5)"),
    ({"data_fraction": [0.5, 1.5]}, "sweep.data_fraction: 1.5 is outside (0, 1]"),
    ({"data_fraction": [0, 0.5]}, "sweep.data_fraction: 0 is outside (0, 1]"),
    ({"data_fraction": [0.5, 0.5]}, "sweep.data_fraction: 0.5 is listed twice"),
    ({"max_samples": [10, 50]}, "sweep.max_samples: 50 is more than data.max_samples (40)"),
    ({}, "sweep: give exactly one of data_fraction or max_samples"),
    ({"fractions": [0.5]}, "sweep.fractions: unknown key; allowed: data_fraction, max_samples"),
])
def test_bad_sweeps_name_the_field(tmp_path: Path, sweep: dict, message: str) -> None:
    path = write_experiment(tmp_path, sweep)
    with pytest.raises(UserError) as error:
        load_experiment(path)
    assert re.match(rf"{re.escape(str(path))}:\d+: {re.escape(message)}", str(error.value)), str(error.value)
    assert "\n" not in str(error.value)


def test_bad_sweep_exits_2_through_the_cli(tmp_path: Path) -> None:
    proc = run_atax("config", "check", str(write_experiment(tmp_path, {"data_fraction": [0.5, 0.25]})))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "sweep.data_fraction" in proc.stderr




def test_run_trains_each_size_and_draws_the_curve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.pipeline.dryrun import dry_run
    from harness.pipeline.scheduler import run_graph

    fractions = [0.25, 0.5, 1.0]
    path = write_experiment(tmp_path, {"data_fraction": fractions}, suites=[KNOWLEDGE])
    experiment = load_experiment(path)
    lines, _ = dry_run(experiment, path, experiment.results_dir)
    assert [line.label for line in lines if line.kind == "train"] == [
        f"train vanilla@{f:g} seed 0 run 1/1" for f in fractions]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", os.environ.get("TOKENIZERS_PARALLELISM", "false"))
    graph = run_graph(experiment, path, experiment.results_dir, InProcessExecutor())
    assert not graph.failed, graph.failed
    results = tmp_path / "res"
    manifests = {m["provenance"]["method"]: m for m in
                 (json.loads(p.read_text()) for p in results.glob("runs/*/checkpoint.json"))}
    assert sorted(manifests) == ["vanilla@0.25", "vanilla@0.5", "vanilla@1"]
    assert [manifests[f"vanilla@{f:g}"]["data"]["n_records"] for f in fractions] == [10, 20, 40]
    assert manifests["vanilla@0.5"]["provenance"]["sweep"]["data_fraction"] == 0.5
    points = json.loads((report_dir(results, "sweep") / "data-size-sweep.json").read_text())["points"]
    assert sorted((p["benchmark"], p["method"], p["size"]) for p in points) == [
        (b, m, f) for b in ("arc_challenge", "openbookqa") for m, f in [("base", 0), *(("vanilla", f) for f in fractions)]]
    assert all(p["ci_low"] <= p["score"] <= p["ci_high"] for p in points)
    assert {p.name for p in (report_dir(results, "sweep") / "figures").iterdir()} >= {
        "data-size-sweep.png", "data-size-sweep.pdf", "alignment-tax-curve.png"}
    redraw = run_atax("analyze", "sweep", "--config", str(path))
    assert redraw.returncode == 0, redraw.stderr
    assert (results / "analysis" / "sweep" / "figures" / "data-size-sweep.png").is_file()
    caption = "Score vs. amount of instruction data, per benchmark"
    assert caption in (report_dir(results, "sweep") / "index.html").read_text()  # the run's leaderboard shows it
    page = run_atax("report", "--results", str(results), "--out", str(tmp_path / "page"), "--sweep-config", str(path))
    assert page.returncode == 0, page.stderr
    assert caption in (tmp_path / "page" / "index.html").read_text()
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({k: v for k, v in yaml.safe_load(path.read_text()).items() if k != "sweep"}))
    refused = run_atax("report", "--results", str(results), "--out", str(tmp_path / "p2"), "--sweep-config", str(plain))
    assert refused.returncode == 2 and refused.stderr == (
        f"error: --sweep-config: {plain} has no sweep section; give the experiment that ran the sweep\n")
    assert not (tmp_path / "p2").exists()

