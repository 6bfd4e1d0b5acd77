"""Crash safety: `atax run` killed with SIGKILL during a train job, during an eval job and right
after an eval's store write, then run again, ends with the same table as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml
from conftest import run_atax

SUITE = {"name": "knowledge", "options": {"data_dir": "builtin:toy-knowledge", "benchmarks": ["arc_challenge"],
                                          "limit": 2}}


def write_experiment(directory: Path) -> Path:
    exp = {"name": "crash", "base_model": {"id": "builtin:tiny-llama"},
           "data": {"source": "builtin:toy-instructions", "max_samples": 48},
           "training": {"batch_size": 8, "max_seq_len": 160, "max_steps": 4, "save_steps": 2,
                        "scheduler": {"warmup_steps": 1}, "optimizer": {"lr": 5e-3}},
           "methods": ["vanilla"], "suites": [SUITE],
           "backend": {"name": "hf"}, "results_dir": "res"}
    path = directory / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def job_running(results: Path, kind: str) -> bool:
    db = results / "results.sqlite"
    if not db.is_file():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            rows = conn.execute("SELECT COUNT(*) FROM jobs WHERE kind = ? AND state = 'running'", (kind,))
            return rows.fetchone()[0] > 0
    except sqlite3.Error:
        return False


def eval_markers(results: Path) -> int:
    import json

    return sum(1 for p in (results / "jobs").glob("*.done.json")
               if json.loads(p.read_text())["job"].startswith("eval")) if (results / "jobs").is_dir() else 0


KILLED_WORKERS: list[set[int]] = []  # per kill: the processes the killed run had started


def descendants(root: int) -> set[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def run_until_killed(exp: Path, condition, timeout: float = 300) -> bool:
    """Start `atax run`, SIGKILL it once `condition()` holds; False if it finished first."""
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(exp), "--quiet"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if condition():
            workers = descendants(proc.pid)  # the zygote and the job it forked
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            KILLED_WORKERS.append(workers)
            gone_by = time.monotonic() + 10
            while any(alive(pid) for pid in workers) and time.monotonic() < gone_by:
                time.sleep(0.05)
            assert not [pid for pid in workers if alive(pid)], "a worker outlived the killed run"
            return True
        time.sleep(0.05)
    proc.wait()
    return False


def test_killed_runs_resume_to_the_same_table(tmp_path):
    reference_dir, crash_dir = tmp_path / "reference", tmp_path / "crash"
    reference_dir.mkdir()
    crash_dir.mkdir()
    reference = run_atax("run", str(write_experiment(reference_dir)), "--quiet", timeout=900)
    assert reference.returncode == 0, reference.stderr
    expected = (reference_dir / "res" / "reports" / "crash" / "table.md").read_text()
    assert "| vanilla |" in expected and "| base |" in expected

    exp = write_experiment(crash_dir)
    results = crash_dir / "res"
    kills = [
        run_until_killed(exp, lambda: job_running(results, "train")),   # during a train job
        run_until_killed(exp, lambda: job_running(results, "eval")),    # during an eval job
        run_until_killed(exp, lambda: eval_markers(results) >= 1),      # right after an eval was stored
    ]
    assert kills[0], "the first run finished before it could be killed"
    assert KILLED_WORKERS[0], "no worker process was running during the train job"  # and none outlived it
    final = run_atax("run", str(exp), "--quiet", timeout=900)
    assert final.returncode == 0, final.stderr
    assert (results / "reports" / "crash" / "table.md").read_text() == expected
    assert not list(results.rglob(".*.tmp-*"))  # no half-written output left behind
