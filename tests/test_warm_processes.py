"""The local executor's warm zygote: jobs run in forked children of one process that imported
the heavy libraries once; results equal a fresh interpreter's; a changed environment or a
killed zygote gets a new one; failures come back as the job's last stderr line."""

from __future__ import annotations

import json
import os
import signal

import pytest
import yaml

from harness.config import load_experiment
from harness.pipeline.executors import run_in_subprocess
from harness.pipeline.executors.warm import WarmProcesses
from harness.pipeline.graph import base_spec, initial_jobs
from harness.pipeline.jobs import Job, outputs_of
from harness.store import ResultsStore


def plan_jobs(directory) -> list[Job]:
    exp = {"name": "warm", "base_model": {"id": "builtin:tiny-llama"},
           "data": {"source": "builtin:toy-instructions", "max_samples": 16},
           "methods": [{"name": "dtm", "options": {"k": 2, "dispersal": "random"}}, "vanilla"], "suites": [], "results_dir": "res"}
    path = directory / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    experiment = load_experiment(path)
    with ResultsStore.open(experiment.results_dir) as store:
        store.add_experiment(experiment.name, experiment.model_dump_json())
    return [j for j in initial_jobs(experiment, base_spec(path, experiment.results_dir)) if j.kind == "plan"]


@pytest.fixture(scope="module")
def shared():
    """One warm parent for the tests below that do not care which (a zygote start costs ~7 s)."""
    processes = WarmProcesses()
    yield processes
    processes.close()


@pytest.fixture
def warm():
    processes = WarmProcesses()
    yield processes
    processes.close()


def test_jobs_run_in_children_of_one_zygote_with_a_fresh_process_result(tmp_path, shared):
    warm = shared
    (tmp_path / "warm").mkdir()
    (tmp_path / "fresh").mkdir()
    jobs, fresh_jobs = plan_jobs(tmp_path / "warm"), plan_jobs(tmp_path / "fresh")
    assert [j.key for j in jobs] == [j.key for j in fresh_jobs]
    assert warm.run(jobs[0].to_json()) == (True, None)
    zygote = warm._zygote.pid
    assert warm.run(jobs[1].to_json()) == (True, None)
    assert warm._zygote.pid == zygote  # imports paid once
    for job, fresh in zip(jobs, fresh_jobs, strict=True):
        assert run_in_subprocess(fresh.to_json()) == (True, None)
        warm_out = json.dumps(outputs_of(tmp_path / "warm" / "res", job.key)).replace(str(tmp_path / "warm"), "")
        fresh_out = json.dumps(outputs_of(tmp_path / "fresh" / "res", job.key)).replace(str(tmp_path / "fresh"), "")
        assert warm_out == fresh_out
    work = sorted(p.relative_to(tmp_path / "warm") for p in (tmp_path / "warm" / "res" / "work").rglob("*.jsonl"))
    assert work, "the DTM plan wrote no assignments"
    for path in work:
        assert (tmp_path / "warm" / path).read_bytes() == (tmp_path / "fresh" / path).read_bytes()


def test_a_failing_job_reports_its_last_stderr_line_as_a_fresh_process_does(tmp_path, shared):
    warm = shared
    job = plan_jobs(tmp_path)[0]
    (tmp_path / "exp.yaml").write_text("name: [unclosed\n")  # the job's experiment is now unreadable
    error = warm.run(job.to_json())
    assert error == run_in_subprocess(job.to_json())
    assert error[0] is False and error[1].startswith(f"{tmp_path / 'exp.yaml'}:")



def test_a_killed_zygote_is_replaced_and_the_job_still_runs(tmp_path, shared):
    warm = shared
    jobs = plan_jobs(tmp_path)
    assert warm.run(jobs[0].to_json()) == (True, None)
    first = warm._zygote.pid
    os.kill(first, signal.SIGKILL)
    warm._zygote.wait()
    assert warm.run(jobs[1].to_json()) == (True, None)
    assert outputs_of(tmp_path / "res", jobs[1].key) is not None
    assert warm.run(jobs[1].to_json()) == (True, None)
    assert warm._zygote.pid != first


def test_a_zygote_that_cannot_start_falls_back_to_fresh_processes(tmp_path, warm, monkeypatch):
    import sys

    from harness.pipeline.executors import warm as warm_module

    monkeypatch.setattr(warm_module, "ZYGOTE_COMMAND", (sys.executable, "-c", "raise SystemExit(3)"))
    jobs = plan_jobs(tmp_path)
    assert warm.run(jobs[0].to_json()) == (True, None)
    assert warm._broken and warm._zygote is None
    assert warm.run(jobs[1].to_json()) == (True, None)
    assert warm._zygote is None  # no second attempt: every later job runs in a fresh interpreter
    assert outputs_of(tmp_path / "res", jobs[1].key) is not None


@pytest.mark.parametrize("why", ["requested", "not_linux"])
def test_fresh_processes_on_request_or_off_linux(tmp_path, warm, monkeypatch, why):
    import sys

    if why == "requested":
        monkeypatch.setenv("ATAX_FRESH_PROCESSES", "1")
    else:
        monkeypatch.setattr(sys, "platform", "darwin")
    job = plan_jobs(tmp_path)[0]
    assert warm.run(job.to_json()) == (True, None)
    assert warm._zygote is None and outputs_of(tmp_path / "res", job.key) is not None


def test_a_changed_environment_gets_a_new_zygote(tmp_path, warm, monkeypatch):
    jobs = plan_jobs(tmp_path)
    assert warm.run(jobs[0].to_json()) == (True, None)
    first = warm._zygote.pid
    monkeypatch.setenv("ATAX_TEST_MARKER", "1")  # libraries read settings like HF_HUB_OFFLINE at import
    assert warm.run(jobs[1].to_json()) == (True, None)
    assert warm._zygote.pid != first


def test_every_preloaded_module_exists():
    import importlib

    from harness.pipeline.zygote import PRELOAD

    for name in PRELOAD:  # the zygote skips a failed import silently: a typo would cost every job ~6 s
        importlib.import_module(name)
