"""SIGINT/SIGTERM stop `atax serve`, `train`, `run` and `eval` mid-work: exit code 130/143, one line on
stderr, no traceback, and the same command run again completes (nothing half-written blocks it).

Real subprocesses. No test times the stop: a process that waited for its in-flight work (a judge
request held open for 10 minutes) would meet the generous backstop instead of exiting, and the
watchdog that guarantees the few seconds is tested on its own with cleanup that never ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import run_atax
from judged_fixtures import ScriptedJudge

pytestmark = pytest.mark.slow
BACKSTOP_S = 240  # only a process that does not stop meets it
LINE = "interrupted ({}): stopped; finished work is kept, the same command resumes"
TINY = "builtin:tiny-llama"


class Started:
    """`atax ARGS` in a subprocess, its stderr in a file that the test can watch while it runs."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.err_path = tmp_path / f"stderr-{time.monotonic_ns()}.txt"
        with self.err_path.open("w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=subprocess.PIPE,
                                         stderr=err, text=True, env=dict(os.environ))

    def stderr_has(self, text: str) -> Callable[[], bool]:
        return lambda: text in self.err_path.read_text(errors="replace")

    def interrupt_when(self, ready: Callable[[], bool], signum: int) -> tuple[int, str]:
        """Send `signum` once `ready()` (the process is mid-work); its exit code and stderr."""
        proc = self.proc
        deadline = time.monotonic() + BACKSTOP_S
        try:
            while not ready():
                assert proc.poll() is None, f"ended before it could be interrupted: {self.err_path.read_text()[-2000:]}"
                assert time.monotonic() < deadline, "never got to the work to interrupt"
                time.sleep(0.05)
            proc.send_signal(signum)
            proc.communicate(timeout=BACKSTOP_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return proc.returncode, self.err_path.read_text(errors="replace")


def assert_stopped_in_one_line(code: int, err: str, signum: int) -> None:
    name = signal.Signals(signum).name
    assert code == 128 + signum, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert lines == [LINE.format(name)], err[-3000:]
    assert err.rstrip().endswith(LINE.format(name))


def experiment(tmp_path: Path, max_steps: int) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "name": "signals", "base_model": {"id": TINY},
        "data": {"source": "builtin:toy-instructions", "max_samples": 32},
        "training": {"batch_size": 4, "max_seq_len": 64, "max_steps": max_steps, "scheduler": {"warmup_steps": 0}},
        "methods": ["vanilla"], "seeds": [0], "results_dir": "results"}))
    return path


def has_entries(path: Path) -> Callable[[], bool]:
    return lambda: path.is_dir() and any(path.iterdir())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_on_a_signal(tmp_path: Path, signum: int) -> None:
    started = Started(tmp_path, "serve", TINY, "--port", "0", "--quiet")
    assert started.proc.stdout is not None
    first = started.proc.stdout.readline()  # "serving ... at http://..." once it listens
    assert first.startswith("serving"), started.err_path.read_text()[-2000:]
    code, err = started.interrupt_when(lambda: True, signum)
    assert_stopped_in_one_line(code, err, signum)


def test_train_stops_mid_work_and_the_rerun_completes(tmp_path: Path) -> None:
    config = experiment(tmp_path, max_steps=100_000)
    args = ("train", "--config", str(config), "--method", "vanilla", "--out", str(tmp_path / "ckpt"), "--quiet")
    started = Started(tmp_path, *args)
    # Training keeps its state in memory until the end; the model's load is the last step before it.
    code, err = started.interrupt_when(started.stderr_has("Loading weights"), signal.SIGINT)
    assert_stopped_in_one_line(code, err, signal.SIGINT)
    assert not (tmp_path / "ckpt").exists()  # nothing half-written where the output goes
    experiment(tmp_path, max_steps=2)  # the rerun: same command, shorter so the test stays quick
    again = run_atax(*args, timeout=BACKSTOP_S)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "ckpt" / "checkpoint.json").is_file()


def test_run_stops_mid_work_and_the_rerun_completes(tmp_path: Path) -> None:
    config = experiment(tmp_path, max_steps=100_000)
    args = ("run", str(config), "--quiet")
    started = Started(tmp_path, *args)
    code, err = started.interrupt_when(has_entries(tmp_path / "results"), signal.SIGTERM)
    assert_stopped_in_one_line(code, err, signal.SIGTERM)
    experiment(tmp_path, max_steps=2)
    again = run_atax(*args, timeout=BACKSTOP_S)
    assert again.returncode == 0, again.stderr[-3000:]
    status = run_atax("status", str(config), "--json")
    assert '"pending": 0' in status.stdout and '"failed": 0' in status.stdout, status.stdout


def test_eval_stops_while_a_judge_request_is_in_flight(tmp_path: Path) -> None:
    # The judge holds every request for 10 minutes: an eval that waited for its in-flight requests
    # would meet the backstop; one that stops on the signal ends within seconds.
    results = tmp_path / "results"
    common = ["eval", TINY, "--suite", "vicuna_bench", "--questions", "builtin:toy-vicuna-bench",
              "--max-gen-toks", "4", "--results", str(results), "--quiet", "-o", "concurrency=2",
              "-o", "timeout_s=900", "--judge-model", "scripted-judge"]
    with ScriptedJudge(lambda m: (200, "Rating: [[5]]"), delay_s=600) as judge:
        started = Started(tmp_path, *common, "--judge-url", judge.url)
        code, err = started.interrupt_when(lambda: judge.requests >= 1, signal.SIGINT)
    assert_stopped_in_one_line(code, err, signal.SIGINT)
    with ScriptedJudge(lambda m: (200, "Rating: [[5]]")) as judge:
        again = run_atax(*common, "--judge-url", judge.url, "--json", timeout=BACKSTOP_S)
    assert again.returncode == 0, again.stderr[-3000:]
    assert '"vicuna_bench"' in again.stdout


def test_the_watchdog_ends_a_process_whose_cleanup_never_ends(tmp_path: Path) -> None:
    # A command whose `finally` blocks forever (a thread that will not join, a child that will not
    # exit) still ends: the watchdog, woken by the signal itself, exits GRACE_S seconds later.
    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent("""
        import sys, threading
        from harness.cli import interrupt
        interrupt.install()
        try:
            print("ready", flush=True)
            threading.Event().wait()
        except interrupt.Interrupted:
            threading.Event().wait()  # cleanup that never ends
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert_stopped_in_one_line(code, err, signal.SIGTERM)


def test_a_second_signal_ends_at_once(tmp_path: Path) -> None:
    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent("""
        import threading, time
        from harness.cli import interrupt
        interrupt.GRACE_S = 3600  # only the second signal can end it within the test
        interrupt.install()
        try:
            print("ready", flush=True)
            threading.Event().wait()
        except interrupt.Interrupted:
            print("cleaning", flush=True)
            while True:
                time.sleep(0.01)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)
    assert proc.stdout.readline() == "cleaning\n"
    proc.send_signal(signal.SIGINT)
    code, err = finish(proc)
    assert_stopped_in_one_line(code, err, signal.SIGINT)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=BACKSTOP_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err
