"""The local executor: one job at a time, each in a fresh process (a GPU is reused job after job),
forked from a warm parent that has the heavy libraries imported already."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from harness.pipeline.executors.warm import WarmProcesses
from harness.pipeline.jobs import Job


class LocalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalExecutor:
    description: ClassVar[str] = "One job at a time on this machine, each in a fresh process."
    slots: ClassVar[int] = 1  # jobs it runs at once: the scheduler submits no more than this
    Options: ClassVar[type[BaseModel]] = LocalOptions

    def __init__(self, options: LocalOptions | None = None, results_dir: Any = None) -> None:
        self._queue: list[Job] = []
        self._processes = WarmProcesses()

    def submit(self, job: Job) -> Any:
        self._queue.append(job)
        return job.key

    def wait(self, handles: list[Any]) -> list[tuple[Any, bool, str | None]]:
        job = next(j for j in self._queue if j.key in handles)
        self._queue.remove(job)
        ok, error = self._processes.run(job.to_json())
        return [(job.key, ok, error)]

    def close(self) -> None:
        self._processes.close()
