"""A training run whose loss goes non-finite stops with one line naming the step and the run, and
its pipeline job is failed, never done (no checkpoint, no done-marker)."""

from __future__ import annotations

import pytest
import yaml
from pipeline_fixtures import InProcessExecutor

from harness.builtin.toy_instructions import generate_toy_instructions
from harness.config import BaseModelConfig, TrainingConfig, load_experiment
from harness.data import InstructionRecord
from harness.errors import UserError
from harness.method import RunSpec
from harness.pipeline.jobs import done_marker
from harness.store import ResultsStore
from harness.train.engine import TrainJob, train

TRAINING = {"batch_size": 8, "max_seq_len": 128, "max_steps": 4, "scheduler": {"warmup_steps": 1}}


def infinite_lr(training: TrainingConfig) -> TrainingConfig:
    """`lr: .inf`, which the config loader refuses: what an engine given one anyway must survive."""
    return training.model_copy(update={"optimizer": training.optimizer.model_copy(update={"lr": float("inf")})})


def test_a_non_finite_loss_stops_training_with_the_step_and_the_run(tmp_path):
    records = [InstructionRecord(**r) for r in generate_toy_instructions(32, 0)]
    job = TrainJob(BaseModelConfig(id="builtin:tiny-llama"), infinite_lr(TrainingConfig.model_validate(TRAINING)),
                   RunSpec(name="main", seed=0), records, tmp_path / "run", "key",
                   provenance={"method": "vanilla", "seed": 0})
    with pytest.raises(UserError, match=r"^run main of vanilla seed 0: the training loss is nan at step 2 of 4; "
                                        r"lower training.optimizer.lr \(now inf\)"):
        train(job)
    assert not (tmp_path / "run" / "checkpoint.json").exists()




def test_the_train_job_is_failed_never_done(tmp_path, monkeypatch):
    from harness.pipeline.scheduler import run_graph
    from harness.train import runner

    exp = {"name": "nan", "base_model": {"id": "builtin:tiny-llama"},
           "data": {"source": "builtin:toy-instructions", "max_samples": 32}, "training": TRAINING,
           "methods": ["vanilla"], "suites": [], "results_dir": "res"}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    original = runner.apply_overrides
    monkeypatch.setattr(runner, "apply_overrides", lambda training, overrides: infinite_lr(original(training, overrides)))
    experiment = load_experiment(path)
    graph = run_graph(experiment, path, experiment.results_dir, InProcessExecutor())
    (train_key, error), = graph.failed.items()
    assert graph.jobs[train_key].label == "train vanilla seed 0 main"
    assert error.startswith("run main of vanilla seed 0: the training loss is nan at step 2 of 4;")
    assert not done_marker(experiment.results_dir, train_key).exists()
    with ResultsStore.open(experiment.results_dir) as store:
        assert store.job_states()[train_key].state == "failed"
    assert not list((tmp_path / "res" / "runs").glob("*/checkpoint.json"))


def test_a_one_slot_executor_is_given_one_job_at_a_time(tmp_path):
    # The local executor runs one job at a time: the scheduler hands it one, so "start" (the display's
    # running job and the duration it prints) means the job began, not that it joined a queue.
    from harness.pipeline.scheduler import run_graph

    exp = {"name": "slots", "base_model": {"id": "builtin:tiny-llama"},
           "data": {"source": "builtin:toy-instructions", "max_samples": 16}, "training": TRAINING,
           "methods": [{"name": "dtm", "options": {"k": 2}}], "suites": [], "results_dir": "res"}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    experiment = load_experiment(path)
    running: set[str] = set()
    most = 0

    def on_event(event, job, error):
        nonlocal most
        if event == "start" and job.kind == "train":
            running.add(job.key)
            most = max(most, len(running))
        elif event in ("done", "failed"):
            running.discard(job.key)

    executor = InProcessExecutor()
    executor.slots = 1
    graph = run_graph(experiment, path, experiment.results_dir, executor, on_event=on_event)
    assert not graph.failed and sum(j.kind == "train" for j in graph.jobs.values()) == 2
    assert most == 1
