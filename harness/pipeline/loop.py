"""The scheduler's loop: claim ready jobs, run light ones here and the rest on the executor, wait
for the ones another run holds, expand the graph as jobs finish, and add the report at the end."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from harness.config import Experiment
from harness.pipeline.claims import Claims
from harness.pipeline.graph import expand, report_job
from harness.pipeline.jobs import Job, outputs_of, verify
from harness.pipeline.steps import is_light

WAIT_POLL_S = 1.0  # how often a run that waits for another run's jobs looks again


@dataclass
class Loop:
    experiment: Experiment
    graph: Any  # scheduler.Graph
    finder: Any  # scheduler.Finder
    executor: Any
    claims: Claims
    on_event: Callable[[str, Job, str | None], None]
    common: dict[str, Any]
    running: dict[Any, Job] = field(default_factory=dict)
    waiting: set[str] = field(default_factory=set)  # ready jobs that another run holds

    def run(self, keep_going: bool) -> None:
        graph = self.graph
        report_added = any(j.kind == "report" for j in graph.jobs.values())
        while True:
            if self._start_ready():
                continue  # a light job ran here and may have made new jobs ready
            if not self.running:
                if self.waiting:
                    time.sleep(WAIT_POLL_S)
                    self._look_at_waiting()
                    continue
                if not report_added and not (graph.failed and not keep_going):
                    evals = [k for k, j in graph.jobs.items() if j.kind == "eval" and k in graph.done]
                    self._know(self.finder.absorb(graph, [report_job(evals, self.common)]))
                    report_added = True
                    continue
                break
            for handle, ok, error in self.executor.wait(list(self.running)):
                self._finish(self.running.pop(handle), ok, error)
            self._look_at_waiting()
            if graph.failed and not keep_going:
                for handle in list(self.running):
                    for _, ok, error in self.executor.wait([handle]):
                        self._finish(self.running.pop(handle), ok, error)
                break

    def _start_ready(self) -> bool:
        """Claim and start what is ready; True when a job ran or finished here (the graph changed)."""
        from harness.pipeline.worker import execute

        changed = False
        busy = {j.key for j in self.running.values()} | self.waiting
        # An executor that runs one job at a time (local) takes one at a time, so "start" (the display's
        # running job and its duration) and the claim mean the job really began, not that it queued.
        slots = getattr(self.executor, "slots", None)
        for job in self.graph.ready(busy):
            if job.kind == "report" and (self.running or self.waiting):
                continue  # the report waits for every eval in flight
            light = is_light(job, self.experiment)  # builds the method: once per job and pass
            if slots is not None and len(self.running) >= slots and not light:
                continue
            if not self.claims.try_claim(job.key):
                self.waiting.add(job.key)
                continue
            if self.finder.reusable(self.graph, job) is not None:  # another run finished it meanwhile
                self.claims.release(job.key)
                self._finish(job, True, None, ran=False)
                changed = True
                continue
            if job.key not in self.finder.executed and self.finder.rerun.matches(job, self.experiment):
                job = replace(job, spec={**job.spec, "rerun": True})
            self.finder.executed.add(job.key)
            self.on_event("start", job, None)
            if light:
                self._finish(job, *execute(job))
                changed = True
            else:
                self.running[self.executor.submit(job)] = job
        return changed

    def _finish(self, job: Job, ok: bool, error: str | None, ran: bool = True) -> None:
        if ran:
            self.claims.release(job.key)
        if ok:
            self.graph.done.add(job.key)
            self._know(self.finder.absorb(self.graph, expand(job, outputs_of(self.finder.results_dir, job.key) or {},
                                                             self.experiment)))
            if ran:
                self.on_event("done", job, None)
        else:
            self.graph.failed[job.key] = error or "failed"
            self.on_event("failed", job, error)

    def _look_at_waiting(self) -> None:
        """Jobs another run holds: done there (use its outputs), or released unfinished (run them here)."""
        for key in list(self.waiting):
            marker, problem = verify(self.finder.results_dir, key)
            if marker is not None and problem is None:
                self.waiting.discard(key)
                self._finish(self.graph.jobs[key], True, None, ran=False)
            elif not self.claims.claimed_by_other(key):
                self.waiting.discard(key)

    def _know(self, jobs: list[Job]) -> None:
        for job in jobs:
            self.on_event("known", job, None)
