"""Run an experiment's DAG: skip finished jobs, run ready ones on an executor, expand the graph
as plans and combines finish, keep going past failures, and end with the report job.

The graph grows while it runs (how many train jobs a method needs is known once its plan has
run), so the scheduler keeps every known job, and a job becomes ready when all of its
dependencies are done. Finished work is found through done-markers, never re-run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import Experiment
from harness.pipeline.jobs import Job, outputs_of
from harness.pipeline.steps import base_spec, expand, initial_jobs, report_job
from harness.store import ResultsStore


@dataclass
class Graph:
    jobs: dict[str, Job] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)

    def add(self, jobs: list[Job]) -> None:
        for job in jobs:
            self.jobs.setdefault(job.key, job)

    def ready(self, running: set[str]) -> list[Job]:
        return [j for k, j in self.jobs.items() if k not in self.done and k not in self.failed and k not in running
                and all(d in self.done for d in j.deps)]

    def pending(self) -> list[Job]:
        return [j for k, j in self.jobs.items() if k not in self.done and k not in self.failed]


def known_graph(experiment: Experiment, experiment_path: Path, results_dir: Path,
                only: set[str] | None = None) -> Graph:
    """Every job known from the experiment and the outputs already on disk (no job is run)."""
    common = base_spec(experiment_path, results_dir)
    graph = Graph()
    frontier = initial_jobs(experiment, common, only)
    while frontier:
        graph.add(frontier)
        new: list[Job] = []
        for job in frontier:
            outputs = outputs_of(results_dir, job.key)
            if outputs is not None:
                graph.done.add(job.key)
                new += [j for j in expand(job, outputs) if j.key not in graph.jobs]
        frontier = new
    evals = [k for k, j in graph.jobs.items() if j.kind == "eval"]
    report = report_job(evals, common)
    if not graph.pending() or report.key in graph.jobs or outputs_of(results_dir, report.key) is not None:
        graph.add([report])
        if outputs_of(results_dir, report.key) is not None:
            graph.done.add(report.key)
    with ResultsStore.open(results_dir) as store:
        states = store.job_states()
    for key, state in states.items():
        if key in graph.jobs and key not in graph.done and state.state == "failed":
            graph.failed[key] = state.error or "failed"
    return graph


def run_graph(experiment: Experiment, experiment_path: Path, results_dir: Path, executor: Any,
              only: set[str] | None = None, keep_going: bool = True,
              on_event: Callable[[str, Job, str | None], None] = lambda event, job, error: None) -> Graph:
    """Run every job not yet done; returns the final graph (failed jobs in `graph.failed`)."""
    graph = known_graph(experiment, experiment_path, results_dir, only)
    graph.failed.clear()  # a new run retries what failed before
    common = base_spec(experiment_path, results_dir)
    running: dict[Any, Job] = {}
    with ResultsStore.open(results_dir) as store:
        store.add_experiment(experiment.name, experiment.model_dump_json())  # evals refer to it
        for job in graph.pending():
            store.set_job_state(job.key, job.kind, "pending")
    report_added = any(j.kind == "report" for j in graph.jobs.values())
    while True:
        for job in graph.ready(set(j.key for j in running.values())):
            if job.kind == "report" and running:
                continue  # the report waits for every eval in flight
            on_event("start", job, None)
            running[executor.submit(job)] = job
        if not running:
            if not report_added and not (graph.failed and not keep_going):
                evals = [k for k, j in graph.jobs.items() if j.kind == "eval" and k in graph.done]
                graph.add([report_job(evals, common)])
                report_added = True
                continue
            break
        for handle, ok, error in executor.wait(list(running)):
            job = running.pop(handle)
            if ok:
                graph.done.add(job.key)
                outputs = outputs_of(results_dir, job.key) or {}
                graph.add(expand(job, outputs))
                on_event("done", job, None)
            else:
                graph.failed[job.key] = error or "failed"
                on_event("failed", job, error)
        if graph.failed and not keep_going:
            for handle in list(running):
                executor.wait([handle])
            break
    return graph
