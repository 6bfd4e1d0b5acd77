"""A broken results store is found before any work starts: a damaged, garbage or read-only
results.sqlite stops `atax run` with one line (exit 2) before a job runs; `atax table` and
`atax report` warn when the store fails its integrity check."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import run_atax

from harness.store import ResultsStore


def write_experiment(directory: Path) -> Path:
    exp = {"name": "health", "base_model": {"id": "builtin:tiny-llama"},
           "data": {"source": "builtin:toy-instructions", "max_samples": 16}, "methods": ["vanilla"],
           "suites": [], "results_dir": "res"}
    path = directory / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def damaged_store(results: Path) -> Path:
    """A store whose header and schema read fine and whose middle pages are garbage."""
    with ResultsStore.open(results) as store:
        store.add_experiment("health", "{}")
        for i in range(3000):
            store.set_job_state(f"job-{i:06d}", "train", "failed", "an error message " * 10)
    db = results / "results.sqlite"
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db.stat().st_size
    with db.open("r+b") as handle:
        handle.seek((size // 4096 // 2) * 4096)
        handle.write(b"\xde\xad" * 2048)
    return db


def assert_stopped_before_any_job(result: subprocess.CompletedProcess[str], results: Path, words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and words in result.stderr, result.stderr
    assert not (results / "jobs").exists() and not (results / "runs").exists()


def test_a_damaged_store_stops_the_run_before_any_job_and_tables_warn(tmp_path):
    exp = write_experiment(tmp_path)
    damaged_store(tmp_path / "res")
    result = run_atax("run", str(exp), "--quiet")
    assert_stopped_before_any_job(result, tmp_path / "res", "is damaged (database disk image is malformed)")
    table = run_atax("table", "--results", str(tmp_path / "res"))
    assert "failed its integrity check (database disk image is malformed)" in table.stderr
    assert "Traceback" not in table.stderr


def test_a_garbage_store_stops_the_run_in_one_line(tmp_path):
    exp = write_experiment(tmp_path)
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "results.sqlite").write_bytes(os.urandom(8192))
    result = run_atax("run", str(exp), "--quiet")
    assert_stopped_before_any_job(result, tmp_path / "res", "is not a SQLite database")


def test_a_read_only_store_stops_the_run_before_any_job(tmp_path):
    exp = write_experiment(tmp_path)
    with ResultsStore.open(tmp_path / "res") as store:
        store.add_experiment("health", "{}")
    db = tmp_path / "res" / "results.sqlite"
    if os.geteuid() == 0:  # root ignores permissions; an immutable file is read-only even for root
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(db)]).returncode != 0:
            pytest.skip("cannot make a file read-only for root here")
    else:
        db.chmod(0o444)
    try:
        result = run_atax("run", str(exp), "--quiet")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(db)])
    assert_stopped_before_any_job(result, tmp_path / "res", "cannot be written (attempt to write a readonly database)")
