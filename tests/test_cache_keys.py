"""Honest cache keys: every job's key folds in the code versions it executes, so a changed merge
operator re-merges and re-evaluates exactly the jobs that use it, a changed method redoes its own
plan, combine and evals (its runs are shared and reused when the plan is unchanged), `atax status`
names what changed, `--rerun` redoes chosen jobs on purpose, and damaged outputs are made again."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pipeline_fixtures import InProcessExecutor

from harness import registry
from harness.config import load_experiment
from harness.pipeline.scheduler import Rerun, run_graph
from harness.pipeline.status import experiment_status

KNOWLEDGE = {"name": "knowledge", "options": {"data_dir": "builtin:toy-knowledge", "limit": 1,
                                              "benchmarks": ["arc_challenge"]}}




def run(path: Path, rerun: Rerun | None = None) -> list[str]:
    """Run the experiment in this process; the labels of the jobs that ran."""
    experiment = load_experiment(path)
    started: list[str] = []
    graph = run_graph(experiment, path, experiment.results_dir, InProcessExecutor(), rerun=rerun,
                      on_event=lambda event, job, error: started.append(job.label) if event == "start" else None)
    assert not graph.failed, graph.failed
    return sorted(started)


@pytest.fixture(scope="module")
def experiment_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("keys")
    exp = {"name": "keys", "base_model": {"id": "builtin:tiny-llama"},
           "data": {"source": "builtin:toy-instructions", "max_samples": 24},
           "training": {"batch_size": 8, "max_seq_len": 128, "max_steps": 1, "scheduler": {"warmup_steps": 1}},
           "methods": ["vanilla", {"name": "dtm", "options": {"k": 2, "merge": {"name": "ties"}}}],
           "suites": [KNOWLEDGE], "backend": {"name": "hf"}, "results_dir": "res"}
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    first = run(path)
    assert len(first) == 11  # plans 2, trains 3, combines 2, evals 3 (base, vanilla, dtm), report
    return path


def bump(monkeypatch: pytest.MonkeyPatch, reg: registry.Registry, name: str, version: str) -> None:
    original = reg.version
    monkeypatch.setattr(reg, "version", lambda n: version if n == name else original(n))


def test_nothing_runs_twice(experiment_file):
    assert run(experiment_file) == []


def test_a_changed_merge_operator_re_merges_and_re_evaluates_exactly_its_jobs(experiment_file, monkeypatch):
    bump(monkeypatch, registry.merges, "ties", "2")
    status = experiment_status(load_experiment(experiment_file), experiment_file, experiment_file.parent / "res")
    combine = [j for j in status.pending() if j.kind == "combine"]
    assert [j.label for j in combine] == ["combine dtm seed 0"]
    assert status.code_changed[combine[0].key] == ["merge:ties 1 -> 2"]
    assert "pending  combine dtm seed 0  (code changed: merge:ties 1 -> 2)" in status.lines()
    assert run(experiment_file) == ["combine dtm seed 0", "eval dtm seed 0 on knowledge", "report"]
    assert run(experiment_file) == []


def test_a_changed_method_redoes_its_plan_combine_and_evals_only(experiment_file, monkeypatch):
    bump(monkeypatch, registry.methods, "dtm", "7")
    # its runs are planned identically, so they are reused (their keys hold the engine's and hooks' versions)
    assert run(experiment_file) == ["combine dtm seed 0", "eval dtm seed 0 on knowledge", "plan dtm seed 0",
                                    "report"]


def test_a_changed_suite_re_evaluates_everything_and_trains_nothing(experiment_file, monkeypatch):
    bump(monkeypatch, registry.suites, "knowledge", "2")
    assert run(experiment_file) == ["eval base on knowledge", "eval dtm seed 0 on knowledge",
                                    "eval vanilla seed 0 on knowledge", "report"]


def test_auto_evals_carry_the_version_of_every_backend_auto_may_pick():
    from harness.keys import eval_versions

    versions = eval_versions("knowledge", "auto")
    assert versions == {"suite:knowledge": registry.plugin_version("suite", "knowledge"),
                        "backend:hf": registry.plugin_version("backend", "hf"),
                        "backend:vllm": registry.plugin_version("backend", "vllm")}
    assert set(eval_versions("knowledge", "hf")) == {"suite:knowledge", "backend:hf"}


def test_rerun_redoes_chosen_jobs_on_purpose(experiment_file):
    assert run(experiment_file, Rerun(methods=frozenset({"vanilla"}))) == [
        "combine vanilla seed 0", "eval vanilla seed 0 on knowledge", "plan vanilla seed 0", "report",
        "train vanilla seed 0 main"]
    assert run(experiment_file, Rerun(suites=frozenset({"knowledge"}))) == [
        "eval base on knowledge", "eval dtm seed 0 on knowledge", "eval vanilla seed 0 on knowledge", "report"]
    assert run(experiment_file) == []


def test_a_damaged_checkpoint_is_found_and_made_again(experiment_file):
    results = experiment_file.parent / "res"
    vanilla = [p for p in results.glob("runs/*/checkpoint.json") if '"method": "vanilla"' in p.read_text()]
    adapter = vanilla[0].parent / "adapter_model.safetensors"
    good = adapter.read_bytes()
    middle = len(good) // 2
    adapter.write_bytes(good[:middle] + bytes(b ^ 0xFF for b in good[middle:middle + 8]) + good[middle + 8:])
    status = experiment_status(load_experiment(experiment_file), experiment_file, results)
    assert any("changed since it was written" in why for why in status.graph.damaged.values())
    assert run(experiment_file) == ["combine vanilla seed 0", "train vanilla seed 0 main"]
    assert adapter.read_bytes() == good  # the same training, made again
    adapter.write_bytes(good[:100])  # truncated
    assert run(experiment_file) == ["combine vanilla seed 0", "train vanilla seed 0 main"]
    assert run(experiment_file) == []


def test_plugin_version_reads_the_attribute_and_a_third_party_distribution(monkeypatch):
    from conftest import PLUGIN_DIST

    assert registry.plugin_version("method", "dtm") == "1"
    assert registry.plugin_version("backend", "answers") == str(getattr(registry.backends.get("answers"),
                                                                       "version", "0"))
    monkeypatch.syspath_prepend(str(PLUGIN_DIST))
    reg = registry.Registry("method", "atax.methods")
    assert reg.version("toy_soup") == "0+atax-dummy-plugin==0.1"


def test_an_init_seed_equal_to_the_seed_is_the_same_run(tmp_path):
    """The engine initialises from `seed` when `init_seed` is unset, so a soup's first ingredient at the
    experiment's seed (same_init) is vanilla's run: one key, trained once."""
    from harness.method import RunSpec
    from harness.train.runner import run_key

    exp = {"name": "soup", "base_model": {"id": "builtin:tiny-llama"},
           "data": {"source": "builtin:toy-instructions", "max_samples": 16},
           "training": {"batch_size": 8, "max_seq_len": 128, "max_steps": 1,
                        "scheduler": {"warmup_steps": 1}},
           "methods": ["vanilla", {"name": "uniform_soup", "options": {"settings": [{}, {"seed": 1}]}}],
           "suites": [KNOWLEDGE], "backend": {"name": "hf"}, "results_dir": "res"}
    path = tmp_path / "soup.yaml"
    path.write_text(yaml.safe_dump(exp))
    experiment = load_experiment(path)
    keys = {init: run_key(experiment, experiment.training, RunSpec(name="x", seed=0, init_seed=init),
                          "d", "v") for init in (None, 0, 1)}
    assert keys[None] == keys[0] != keys[1]
    trained = [label for label in run(path) if label.startswith("train ")]
    assert trained == ["train uniform_soup seed 0 ingredient-1", "train vanilla seed 0 main"]
