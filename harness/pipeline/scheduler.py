"""Run an experiment's DAG: skip finished jobs, run ready ones on an executor, expand the graph
as plans and combines finish, keep going past failures, and end with the report job.

The graph grows while it runs (how many train jobs a method needs is known once its plan has
run), so the scheduler keeps every known job, and a job becomes ready when all of its
dependencies are done. Finished work is found through done-markers whose output files still
verify (harness.pipeline.jobs.verify); damaged outputs are discarded and made again. Every job is
claimed before it runs (harness.pipeline.claims), so two `atax run`s on one results directory
share the work: a job another run holds is waited for, never run twice. Light jobs (plans and
identity combines that load no model) run in this process rather than a worker each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import Experiment
from harness.pipeline.claims import Claims
from harness.pipeline.graph import base_spec, expand, initial_jobs, report_job
from harness.pipeline.jobs import Job, discard_outputs, outputs_of, verify
from harness.pipeline.loop import Loop
from harness.pipeline.rows import find_row, selected
from harness.store import ResultsStore


@dataclass(frozen=True)
class Rerun:
    """`atax run --rerun method=NAME|suite=NAME|all`: jobs redone on purpose although they are done."""

    methods: frozenset[str] = frozenset()
    suites: frozenset[str] = frozenset()
    everything: bool = False

    def __bool__(self) -> bool:
        return self.everything or bool(self.methods or self.suites)

    def matches(self, job: Job, experiment: Experiment) -> bool:
        if self.everything or (job.kind == "report" and self):
            return True
        if job.kind == "eval" and job.spec["suite"] in self.suites:
            return True
        row = job.spec.get("row", job.spec.get("method"))
        if not self.methods or row is None:
            return False
        row = row.split("[", 1)[0]  # a variant's eval: scaled_vanilla[alpha=0.5]
        try:
            return selected(find_row(experiment, row), set(self.methods))
        except KeyError:  # the base model's row
            return row in self.methods


@dataclass
class Graph:
    jobs: dict[str, Job] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    damaged: dict[str, str] = field(default_factory=dict)  # done jobs whose outputs did not verify

    def add(self, jobs: list[Job]) -> list[Job]:
        """Add `jobs`; returns those that were new."""
        new = [j for j in jobs if j.key not in self.jobs]
        for job in new:
            self.jobs[job.key] = job
        return new

    def ready(self, busy: set[str]) -> list[Job]:
        return [j for k, j in self.jobs.items() if k not in self.done and k not in self.failed and k not in busy
                and all(d in self.done for d in j.deps)]

    def pending(self) -> list[Job]:
        return [j for k, j in self.jobs.items() if k not in self.done and k not in self.failed]


@dataclass
class Finder:
    """Which known jobs are done: a verified marker, not chosen for a rerun (unless rerun already)."""

    experiment: Experiment
    results_dir: Path
    rerun: Rerun = field(default_factory=Rerun)
    repair: bool = False  # discard damaged outputs (atax run), or only report them (atax status)
    executed: set[str] = field(default_factory=set)  # jobs this run has run: a rerun happens once

    def reusable(self, graph: Graph, job: Job) -> dict[str, Any] | None:
        if job.key not in self.executed and self.rerun.matches(job, self.experiment):
            return None
        marker, problem = verify(self.results_dir, job.key)
        if problem is not None:
            graph.damaged[job.key] = problem
            if self.repair:
                discard_outputs(self.results_dir, job.key, marker)
            return None
        return None if marker is None else marker.outputs

    def absorb(self, graph: Graph, jobs: list[Job]) -> list[Job]:
        """Add `jobs` and everything their finished work makes known; returns the jobs added."""
        added, frontier = [], graph.add(jobs)
        while frontier:
            added += frontier
            new: list[Job] = []
            for job in frontier:
                outputs = self.reusable(graph, job)
                if outputs is not None:
                    graph.done.add(job.key)
                    new += graph.add(expand(job, outputs, self.experiment))
            frontier = new
        return added


def known_graph(experiment: Experiment, experiment_path: Path, results_dir: Path,
                only: set[str] | None = None, finder: Finder | None = None) -> Graph:
    """Every job known from the experiment and the outputs already on disk (no job is run)."""
    finder = finder or Finder(experiment, results_dir)
    common = base_spec(experiment_path, results_dir)
    graph = Graph()
    finder.absorb(graph, initial_jobs(experiment, common, only))
    evals = [k for k, j in graph.jobs.items() if j.kind == "eval"]
    report = report_job(evals, common)
    if not graph.pending() or outputs_of(results_dir, report.key) is not None:
        finder.absorb(graph, [report])
    with ResultsStore.open(results_dir) as store:
        states = store.job_states()
    for key, state in states.items():
        if key in graph.jobs and key not in graph.done and state.state == "failed":
            graph.failed[key] = state.error or "failed"
    return graph


def run_graph(experiment: Experiment, experiment_path: Path, results_dir: Path, executor: Any,
              only: set[str] | None = None, keep_going: bool = True,
              on_event: Callable[[str, Job, str | None], None] = lambda event, job, error: None,
              rerun: Rerun | None = None) -> Graph:
    """Run every job not yet done; returns the final graph (failed jobs in `graph.failed`)."""
    finder = Finder(experiment, results_dir, rerun or Rerun(), repair=True)
    graph = known_graph(experiment, experiment_path, results_dir, only, finder)
    graph.failed.clear()  # a new run retries what failed before
    with ResultsStore.open(results_dir) as store:
        store.add_experiment(experiment.name, experiment.model_dump_json())  # evals refer to it
        for job in graph.pending():
            store.set_job_state(job.key, job.kind, "pending")
    for job in graph.jobs.values():
        on_event("known", job, None)
    claims = Claims(results_dir)
    try:
        Loop(experiment, graph, finder, executor, claims, on_event, base_spec(experiment_path, results_dir)).run(
            keep_going)
    finally:
        claims.close()
    return graph
