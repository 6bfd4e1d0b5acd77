"""An executor for pipeline tests: the local executor's worker code, run in the test's process."""

from __future__ import annotations

from harness.pipeline.jobs import Job


class InProcessExecutor:
    """The local executor without a process per job (the same worker code), to keep a test fast."""

    def __init__(self) -> None:
        self.queue: list[Job] = []

    def submit(self, job: Job) -> str:
        self.queue.append(job)
        return job.key

    def wait(self, handles: list[str]) -> list[tuple[str, bool, str | None]]:
        from harness.pipeline.worker import execute

        job = next(j for j in self.queue if j.key in handles)
        self.queue.remove(job)
        return [(job.key, *execute(job))]
