"""Job claims: two `atax run`s on one results directory share the work, every job runs exactly
once; a claim whose owner died or whose lease lapsed is taken over, a live one never is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter

import yaml

from harness.pipeline.claims import Claims, claim_path


def test_a_live_claim_is_exclusive_and_a_dead_or_lapsed_one_is_taken_over(tmp_path):
    first, second = Claims(tmp_path, lease_s=60, heartbeat_s=0.2), Claims(tmp_path, lease_s=60, heartbeat_s=0.2)
    try:
        assert first.try_claim("job-a")
        assert not second.try_claim("job-a") and second.claimed_by_other("job-a")
        before = claim_path(tmp_path, "job-a").stat().st_mtime_ns
        time.sleep(0.6)
        assert claim_path(tmp_path, "job-a").stat().st_mtime_ns > before  # the owner's heartbeat
        first.release("job-a")
        assert second.try_claim("job-a")
        # an owner that died on this host: taken over once its heartbeat has stopped
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip()
        path = claim_path(tmp_path, "job-b")
        path.write_text(json.dumps({"run": "x", "pid": int(dead), "host": os.uname().nodename}))
        assert not first.try_claim("job-b")  # its last heartbeat is recent: maybe not dead yet
        old = time.time() - 1.0
        os.utime(path, (old, old))
        assert first.try_claim("job-b")
        # an owner elsewhere whose lease lapsed (a machine that died)
        path = claim_path(tmp_path, "job-c")
        path.write_text(json.dumps({"run": "y", "pid": 1, "host": "another-host"}))
        assert not first.try_claim("job-c")
        old = time.time() - 61
        os.utime(path, (old, old))
        assert first.try_claim("job-c")
    finally:
        first.close()
        second.close()
    assert not list(tmp_path.glob("jobs/*.claim"))  # released on close


def test_two_concurrent_runs_run_every_job_exactly_once(tmp_path):
    exp = {"name": "claims", "base_model": {"id": "builtin:tiny-llama"},
           "data": {"source": "builtin:toy-instructions", "max_samples": 24},
           "training": {"batch_size": 8, "max_seq_len": 128, "max_steps": 2, "scheduler": {"warmup_steps": 1}},
           "methods": ["vanilla", {"name": "dtm", "options": {"k": 2}},
                       {"name": "uniform_soup", "options": {"settings": [{"lr": 1e-3}, {"lr": 2e-3}]}}],
           "suites": [], "results_dir": "res"}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    command = [sys.executable, "-m", "harness", "run", str(path), "--quiet"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [run.communicate(timeout=900) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outcomes
    finished = [line.split(None, 2)[2].rsplit("  (", 1)[0]
                for line in (tmp_path / "res" / "run.log").read_text().splitlines() if line.startswith("done")]
    # plans 3, trains 5, combines 3, report 1: each run by one of the two
    assert len(finished) == 12 and set(Counter(finished).values()) == {1}, Counter(finished)
    assert len(list((tmp_path / "res" / "jobs").glob("*.done.json"))) == 12
    assert not list((tmp_path / "res" / "jobs").glob("*.claim"))
