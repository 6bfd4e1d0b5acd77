"""Run jobs as children of a warm zygote process (harness.pipeline.zygote) instead of fresh
interpreters: the same fresh process per job, without paying the heavy imports every time.
ATAX_FRESH_PROCESSES=1, or any OS but Linux, starts a fresh interpreter per job instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.pipeline.executors import die_with_parent, run_in_subprocess

ZYGOTE_COMMAND = (sys.executable, "-m", "harness.pipeline.zygote")


class WarmProcesses:
    def __init__(self) -> None:
        self._zygote: subprocess.Popen[str] | None = None
        self._environment: dict[str, str] = {}
        self._served = 0  # jobs the current zygote has answered
        self._broken = False  # a zygote died before serving a job: it cannot start here

    def run(self, job_json: str) -> tuple[bool, str | None]:
        # Linux only: macOS aborts some forked children of a process that loaded its frameworks,
        # and only Linux lets the zygote's children die with it (PR_SET_PDEATHSIG).
        if self._broken or not sys.platform.startswith("linux") or os.environ.get("ATAX_FRESH_PROCESSES") == "1":
            return run_in_subprocess(job_json)
        return self._run_warm(job_json)

    def _run_warm(self, job_json: str) -> tuple[bool, str | None]:
        # Libraries read some settings (HF_HUB_OFFLINE, ...) when imported: a zygote serves only
        # the environment it was started with.
        environment = dict(os.environ)
        if self._zygote is None or self._zygote.poll() is not None or environment != self._environment:
            self._start(environment)
        assert self._zygote is not None and self._zygote.stdin is not None and self._zygote.stdout is not None
        with tempfile.TemporaryDirectory(prefix="atax-job-") as tmp:
            paths = {name: str(Path(tmp) / name) for name in ("job", "stdout", "stderr")}
            Path(paths["job"]).write_text(job_json, encoding="utf-8")
            try:
                self._zygote.stdin.write(json.dumps(paths) + "\n")
                self._zygote.stdin.flush()
                reply = self._zygote.stdout.readline()
            except (BrokenPipeError, OSError):
                reply = ""
            if not reply:  # the zygote itself died: run this job the slow way
                self._broken = self._served == 0
                self.close()
                return run_in_subprocess(job_json)
            self._served += 1
            code = json.loads(reply)["exit_code"]
            if code == 0:
                return True, None
            lines = Path(paths["stderr"]).read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return False, lines[-1] if lines else f"exit code {code}"

    def _start(self, environment: dict[str, str]) -> None:
        self.close()
        self._environment = environment
        self._served = 0
        self._zygote = subprocess.Popen(list(ZYGOTE_COMMAND), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                        env=environment, preexec_fn=die_with_parent)

    def close(self) -> None:
        if self._zygote is None:
            return
        zygote, self._zygote = self._zygote, None
        try:
            if zygote.stdin is not None:
                zygote.stdin.close()  # end of requests: the zygote's loop ends
            zygote.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            zygote.kill()
            zygote.wait()
