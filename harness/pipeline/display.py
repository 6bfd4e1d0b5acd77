"""What `atax run` shows while it works: a live line (jobs done/total, the running job, elapsed,
an ETA) and one line per finished job (kind, name, duration) that stays in the scrollback.

Without a terminal (CI, `| tee`, nohup) the live line would be noise: finished-job lines are
printed plainly instead. Every finished-job line also goes to `<results>/run.log`, quiet or not.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import TextIO

from harness.pipeline.jobs import Job


def format_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


class JobClock:
    """Durations of finished jobs by kind, and an ETA for the jobs still to run from them."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.known: dict[str, str] = {}  # job key -> kind, every job the run knows of
        self.finished: dict[str, float] = {}  # job key -> seconds
        self._by_kind: dict[str, list[float]] = defaultdict(list)

    def know(self, job: Job) -> None:
        self.known.setdefault(job.key, job.kind)

    def start(self, job: Job, now: float) -> None:
        self.know(job)
        self.started[job.key] = now

    def finish(self, job: Job, now: float) -> float:
        seconds = now - self.started.pop(job.key, now)
        self.finished[job.key] = seconds
        self._by_kind[job.kind].append(seconds)
        return seconds

    def eta(self, now: float) -> float | None:
        """Seconds left: each unfinished job costs the mean of its kind so far (else of all jobs);
        a running job has already spent part of it. None before any job has finished."""
        every = [s for values in self._by_kind.values() for s in values]
        if not every:
            return None
        overall = sum(every) / len(every)
        left = 0.0
        for key, kind in self.known.items():
            if key in self.finished:
                continue
            values = self._by_kind.get(kind)
            mean = sum(values) / len(values) if values else overall
            left += max(0.0, mean - (now - self.started[key])) if key in self.started else mean
        return left


class RunDisplay:
    def __init__(self, quiet: bool, log_path: Path | None = None, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.clock = JobClock()
        self._stream = stream or sys.stderr
        self._live = None
        self._task = None
        self._t0 = time.monotonic()
        self._log = None
        self._labels: dict[str, str] = {}
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = log_path.open("a", encoding="utf-8")
            self._log.write(f"--- atax run started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            self._log.flush()
        if not quiet and self._stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._live = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
                                  console=Console(file=self._stream))
            self._live.start()
            self._task = self._live.add_task("jobs", total=None, eta="")

    def on_event(self, event: str, job: Job, error: str | None) -> None:
        now = time.monotonic()
        self._labels[job.key] = job.label
        if event == "known":
            self.clock.know(job)
        elif event == "start":
            self.clock.start(job, now)
        else:
            seconds = self.clock.finish(job, now)
            status = "done" if event == "done" else "FAILED"
            line = f"{status:<6} {job.kind:<8} {job.label}  ({format_duration(seconds)})"
            if event == "failed" and error:
                line += f": {error.strip().splitlines()[-1] if error.strip() else 'failed'}"
            self._emit(line)
        self._refresh(now)

    def _emit(self, line: str) -> None:
        if self._log is not None:
            self._log.write(line + "\n")
            self._log.flush()
        if self.quiet:
            return
        if self._live is not None:
            self._live.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self._stream, flush=True)

    def _refresh(self, now: float) -> None:
        if self._live is None:
            return
        running = sorted(self._labels[k] for k in self.clock.started)
        eta = self.clock.eta(now)
        description = ("running " + ", ".join(running)) if running else "waiting"
        self._live.update(self._task, description=description[:60].ljust(60), completed=len(self.clock.finished),
                          total=max(len(self.clock.known), 1),
                          eta=f"ETA {format_duration(eta)}" if eta is not None else "ETA –")

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
        if self._log is not None:
            done = len(self.clock.finished)
            self._log.write(f"--- {done} job(s) finished in {format_duration(time.monotonic() - self._t0)}\n")
            self._log.close()
