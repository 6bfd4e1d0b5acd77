"""Executors: where jobs run (local subprocesses, a Ray cluster, SLURM through submitit).

Each implements `submit(job) -> handle` and `wait(handles) -> [(handle, ok, error)]`, returning at
least one finished job; the scheduler decides what is ready, executors only run it.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from harness.pipeline.jobs import Job


def die_with_parent() -> None:
    """Linux: the worker gets SIGKILL when the process that started it dies (even by kill -9),
    so a killed `atax run` leaves no orphan writing results behind the next run's back."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_in_subprocess(job_json: str) -> tuple[bool, str | None]:
    """Run one job through the worker in a fresh Python process (used by every executor)."""
    job = Job.from_json(job_json)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        handle.write(job_json)
        path = handle.name
    try:
        result = subprocess.run([sys.executable, "-m", "harness.pipeline.worker", path], capture_output=True,
                                text=True, preexec_fn=die_with_parent)
    finally:
        Path(path).unlink(missing_ok=True)
    if result.returncode == 0:
        return True, None
    tail = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
    return False, tail if tail else f"{job.label} failed"
