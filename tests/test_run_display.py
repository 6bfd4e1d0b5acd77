"""`atax run`'s progress: a line per finished job (kind, name, duration) that stays in the scrollback
and in `<results>/run.log`, an ETA from the durations so far, and nothing on the terminal when quiet."""

from __future__ import annotations

import io
from pathlib import Path

from harness.pipeline.display import JobClock, RunDisplay, format_duration
from harness.pipeline.jobs import Job


def job(kind: str, name: str) -> Job:
    return Job(f"{kind}-{name}", kind, name, (), {})


def test_eta_uses_each_kinds_mean_and_what_running_jobs_already_spent() -> None:
    clock = JobClock()
    trains = [job("train", f"r{i}") for i in range(3)]
    evals = [job("eval", f"e{i}") for i in range(2)]
    for j in trains + evals:
        clock.know(j)
    assert clock.eta(0.0) is None  # nothing finished: no estimate yet
    clock.start(trains[0], 0.0)
    clock.finish(trains[0], 10.0)
    clock.start(trains[1], 10.0)
    # train r1 has spent 4 of its expected 10 s; r2 costs 10; each eval costs the overall mean (10)
    assert clock.eta(14.0) == 6.0 + 10.0 + 2 * 10.0
    clock.finish(trains[1], 20.0)
    clock.start(evals[0], 20.0)
    clock.finish(evals[0], 22.0)
    assert clock.eta(22.0) == 10.0 + 2.0  # r2 at the train mean, e1 at the eval mean


def test_finished_jobs_are_plain_lines_without_a_terminal_and_go_to_the_log(tmp_path: Path) -> None:
    stream = io.StringIO()  # not a TTY, as under CI or `| tee`
    display = RunDisplay(quiet=False, log_path=tmp_path / "res" / "run.log", stream=stream)
    ok, bad = job("train", "vanilla-seed0#0"), job("eval", "dtm-seed0 knowledge")
    for j in (ok, bad):
        display.on_event("known", j, None)
        display.on_event("start", j, None)
    display.on_event("done", ok, None)
    display.on_event("failed", bad, "Traceback ...\nValueError: boom")
    display.close()
    lines = stream.getvalue().splitlines()
    assert [line.split()[:3] for line in lines] == [["done", "train", "vanilla-seed0#0"],
                                                    ["FAILED", "eval", "dtm-seed0"]]
    assert lines[1].endswith("ValueError: boom") and "(" in lines[0] and lines[0].endswith("s)")
    log = (tmp_path / "res" / "run.log").read_text()
    assert lines[0] in log and lines[1] in log and "2 job(s) finished" in log


def test_quiet_prints_nothing_but_still_logs(tmp_path: Path) -> None:
    stream = io.StringIO()
    display = RunDisplay(quiet=True, log_path=tmp_path / "run.log", stream=stream)
    display.on_event("start", job("plan", "vanilla"), None)
    display.on_event("done", job("plan", "vanilla"), None)
    display.close()
    assert stream.getvalue() == ""
    assert "done   plan     vanilla" in (tmp_path / "run.log").read_text()


def test_durations_read_like_a_person_writes_them() -> None:
    assert [format_duration(s) for s in (0.25, 59.94, 61, 3599, 3661)] == ["0.2s", "59.9s", "1m01s", "59m59s",
                                                                         "1h01m"]
