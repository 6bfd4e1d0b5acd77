"""`atax status`: done, pending and failed jobs, and why a pending job that ran before must run
again: its code versions changed (a done-marker exists for the same logical job with other
versions), or its outputs were damaged after it finished."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.config import Experiment
from harness.keys import changed
from harness.pipeline.jobs import Job, all_markers
from harness.pipeline.scheduler import Graph, known_graph


@dataclass
class Status:
    graph: Graph
    code_changed: dict[str, list[str]] = field(default_factory=dict)  # job key -> "name old -> new"

    def pending(self) -> list[Job]:
        return [j for j in self.graph.pending() if j.key not in self.graph.failed]

    def counts(self) -> dict[str, int]:
        return {"done": len(self.graph.done), "pending": len(self.pending()), "failed": len(self.graph.failed),
                "code_changed": len(self.code_changed), "damaged": len(self.graph.damaged)}

    def lines(self) -> list[str]:
        graph = self.graph
        out = [f"done     {graph.jobs[key].label}" for key in graph.done]
        for job in self.pending():
            why = ""
            if job.key in self.code_changed:
                why = f"  (code changed: {', '.join(self.code_changed[job.key])})"
            elif job.key in graph.damaged:
                why = f"  (outputs damaged: {graph.damaged[job.key]})"
            out.append(f"pending  {job.label}{why}")
        out += [f"failed   {graph.jobs[key].label}: {error.splitlines()[0]}" for key, error in graph.failed.items()]
        return out


def experiment_status(experiment: Experiment, experiment_path: Path, results_dir: Path) -> Status:
    graph = known_graph(experiment, experiment_path, results_dir)
    by_logical = {}
    for key, marker in all_markers(results_dir).items():
        if marker.logical:
            by_logical.setdefault(marker.logical, []).append((key, marker))
    status = Status(graph)
    for job in graph.pending():
        for key, marker in by_logical.get(job.logical, []):
            if key != job.key and marker.versions != job.versions:
                status.code_changed[job.key] = changed(marker.versions, job.versions)
                break
    return status
