"""Run one job in this (fresh) process: `python -m harness.pipeline.worker JOB.json`; the scheduler
calls `execute` in its own process for light jobs (plans, identity combines).

A fresh process per job returns all GPU memory when the job ends. The job's state goes to the
store; on success its outputs go to its done-marker, written last. Exit 0 on success, 1 on a
failure (its one-line reason is in the store and on stderr).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

from harness.errors import UserError
from harness.pipeline.jobs import Job, mark_done
from harness.pipeline.steps import run_job
from harness.store import ResultsStore


def execute(job: Job) -> tuple[bool, str | None]:
    results = Path(job.spec["results_dir"])
    try:
        with ResultsStore.open(results) as store:
            store.set_job_state(job.key, job.kind, "running")
        started = time.monotonic()
        try:
            with experiment_directory(job):
                outputs = run_job(job)
        except UserError as exc:
            error = str(exc)
        except sqlite3.DatabaseError as exc:
            error = f"results database {results / 'results.sqlite'}: {exc}; check the disk, or move it away"
        except Exception as exc:  # a bug: keep the traceback for whoever reads the job's error
            error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        else:
            mark_done(results, job, outputs, time.monotonic() - started)
            with ResultsStore.open(results) as store:
                store.set_job_state(job.key, job.kind, "done")
            return True, None
        with ResultsStore.open(results) as store:
            store.set_job_state(job.key, job.kind, "failed", error)
        return False, error
    except UserError as exc:  # the store cannot be opened
        return False, str(exc)
    except sqlite3.DatabaseError as exc:  # the store broke while the job ran
        return False, f"results database {results / 'results.sqlite'}: {exc}; check the disk, or move it away"


@contextlib.contextmanager
def experiment_directory(job: Job) -> Iterator[None]:
    """Relative paths inside an experiment (method options included) are relative to its file."""
    before = os.getcwd()
    os.chdir(Path(job.spec["experiment"]).parent)
    try:
        yield
    finally:
        os.chdir(before)


def main() -> None:
    job = Job.from_json(Path(sys.argv[1]).read_text(encoding="utf-8"))
    ok, error = execute(job)
    if not ok:
        sys.stderr.write(f"{error.splitlines()[0] if error else 'failed'}\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
