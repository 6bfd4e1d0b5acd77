"""What `atax run` shows while it works: a rich progress bar over the jobs known so far."""

from __future__ import annotations

from harness.pipeline.jobs import Job


class RunDisplay:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._bar = None
        self._task = None
        self._total = 0
        self._finished = 0
        if not quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn())
            self._bar.start()
            self._task = self._bar.add_task("jobs", total=None)

    def on_event(self, event: str, job: Job, error: str | None) -> None:
        if event == "start":
            self._total += 1
        else:
            self._finished += 1
        if self._bar is not None:
            self._bar.update(self._task, description=f"{event}: {job.label}"[:70], completed=self._finished,
                             total=self._total)
            if event == "failed":
                self._bar.console.print(f"[red]failed[/]: {job.label}: {(error or '').splitlines()[0]}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
