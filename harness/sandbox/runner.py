"""Run model-written Python programs (a completion plus its tests) in a sandboxed subprocess and score them.

Each program runs as `[unshare --net --pid --fork --kill-child] python -s [-S] bootstrap.py` in a new
session, in a fresh temporary directory that is removed afterwards, with a scrubbed environment, under
rlimits and the bootstrap's audit-hook guard (see bootstrap.py and limits.py). It has passed only if it
exits 0 and wrote the run's secret token, which the bootstrap writes only after the program's last line.

Why not `python -I`: it implies -E, which would ignore PYTHONHASHSEED and make set/dict-of-str order (and
so some verdicts) vary between runs. The environment is built from scratch here, so -E adds nothing; -s
drops the user site directory and -S, unless `Limits.site_packages`, all installed packages.

Linux only: it relies on /proc, process groups, and (where available) unshare(1).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.sandbox.limits import Limits

logger = logging.getLogger(__name__)

Status = Literal["passed", "failed", "timeout", "error"]
BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
_CHILD_PATH = "/usr/local/bin:/usr/bin:/bin"
_GROUP_EXIT_WAIT_S = 1.0
_UNSHARE_NOISE = "unshare: sigprocmask unblock failed: Invalid argument\n"
_NETWORK_PROBE = "import socket, sys; sys.exit([n for _, n in socket.if_nameindex()] != ['lo'])"


@dataclass(frozen=True)
class ExecutionResult:
    """How one program ended. `error` means the sandbox failed before the program started."""

    status: Status
    returncode: int | None  # negative: killed by that signal (1 when unshare relays a SIGKILL)
    stdout: str  # at most Limits.output_bytes of it, plus a note when cut
    stderr: str
    duration_s: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def run_program(code: str, *, timeout_s: float = 10.0, limits: Limits | None = None) -> ExecutionResult:
    """Run `code` (e.g. prompt + completion + tests) in the sandbox; never raises for what the code does."""
    limits = limits or Limits()
    token = secrets.token_hex(16)  # unguessable, so printing a constant cannot fake a pass
    root = Path(tempfile.mkdtemp(prefix="atax-sandbox-"))
    try:
        work = root / "work"  # the program's cwd; its outputs and the program file live beside it
        work.mkdir()
        program = root / "program.py"
        program.write_text(code, encoding="utf-8")
        with open(root / "stdout", "wb") as out, open(root / "stderr", "wb") as err, \
                open(root / "status", "wb") as status:
            config = {"work_dir": str(work), "program": str(program), "status_fd": status.fileno(),
                      "rlimits": limits.rlimits(timeout_s)}
            interpreter = [sys.executable, "-s", *([] if limits.site_packages else ["-S"])]
            command = [*_isolation_prefix(), *interpreter, str(BOOTSTRAP), json.dumps(config)]
            start = time.monotonic()
            try:
                proc = subprocess.Popen(command, cwd=work, env=_child_env(work), stdin=subprocess.PIPE,
                                        stdout=out, stderr=err, pass_fds=(status.fileno(),),
                                        start_new_session=True)  # its own process group, to kill as one
            except OSError as e:
                return ExecutionResult("error", None, "", f"sandbox: could not start python: {e}", 0.0)
            timed_out = True  # until the wait says otherwise: an interrupted harness still kills the program
            try:
                _send_token(proc, token)
                timed_out = _wait_for_exit(proc.pid, timeout_s)
            finally:
                returncode, cpu_s = _kill_group_and_reap(proc, timed_out)
            duration_s = time.monotonic() - start
        status_text = (root / "status").read_text(errors="replace")
        # The CPU limit shows as SIGXCPU (directly, or as 128 + signo through `unshare --fork`); CPU
        # accounting alone can come out just short of the limit on a loaded machine.
        cpu_killed = returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU)
        if timed_out or cpu_killed or cpu_s >= limits.cpu_limit_s(timeout_s) - 0.05:
            verdict: Status = "timeout"
        elif returncode == 0 and token in status_text:
            verdict = "passed"
        elif not status_text:
            verdict = "error"  # the bootstrap never reached the program: stderr says why
        else:
            verdict = "failed"
        # unshare --fork cannot re-raise a SIGKILL that ended its child and says so; that is not the program's.
        stderr = _read_capped(root / "stderr", limits.output_bytes).replace(_UNSHARE_NOISE, "")
        return ExecutionResult(verdict, returncode, _read_capped(root / "stdout", limits.output_bytes), stderr,
                               duration_s)
    finally:
        _remove_tree(root)


def run_programs(codes: list[str], *, workers: int | None = None, timeout_s: float = 10.0,
                 limits: Limits | None = None) -> list[ExecutionResult]:
    """Run many programs, `workers` at a time (default: one per usable CPU); results in input order."""
    if not codes:
        return []
    _isolation_prefix()  # probe once here rather than racing in every worker thread
    workers = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=min(workers, len(codes)), thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda code: run_program(code, timeout_s=timeout_s, limits=limits), codes))


def network_isolation_available() -> bool:
    """Whether programs run in their own network namespace (no interfaces but a downed loopback).

    Where it is not (no `unshare`, or namespaces forbidden, as in some containers), the bootstrap's guard
    still refuses socket connect/bind/sendto and name lookups, but that guard is in-process only.
    """
    return any(arg == "--net" for arg in _isolation_prefix())


_prefix_lock = threading.Lock()
_prefix: tuple[str, ...] | None = None


def _isolation_prefix() -> tuple[str, ...]:
    """The `unshare ...` words to put before python, found by trying them once per harness process."""
    global _prefix
    with _prefix_lock:
        if _prefix is None:
            _prefix = _probe_isolation()
        return _prefix


def _probe_isolation() -> tuple[str, ...]:
    unshare = shutil.which("unshare")
    # Root may create namespaces directly; anyone else needs a user namespace to hold them.
    user = () if os.geteuid() == 0 else ("--user", "--map-root-user")
    # The PID namespace makes the kernel kill every process the program left behind when it exits.
    candidates = [(unshare, *user, "--net", "--pid", "--fork", "--kill-child"), (unshare, *user, "--net")]
    for prefix in candidates if unshare else []:
        try:
            probe = subprocess.run([*prefix, sys.executable, "-S", "-s", "-c", _NETWORK_PROBE],
                                   env={"PATH": _CHILD_PATH}, capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    logger.warning("sandbox: `unshare --net` does not work here; programs run without network isolation "
                   "(the in-process guard still refuses sockets)")
    return ()


def _child_env(work: Path) -> dict[str, str]:
    # Built from nothing: no proxies, tokens or PYTHON* settings of the harness leak into the program.
    return {"PATH": _CHILD_PATH, "LANG": "C.UTF-8", "HOME": str(work), "TMPDIR": str(work),
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _send_token(proc: subprocess.Popen, token: str) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(token.encode() + b"\n")  # far below the pipe buffer: never blocks
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the child died at once; its status says so


def _wait_for_exit(pid: int, timeout_s: float) -> bool:
    """Wait until `pid` exits, without reaping it; True if it was still running after `timeout_s`.

    Not reaping keeps the leader a zombie, so its pid (= the group id) cannot be reused before the group
    is killed.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # Linux < 5.3: poll instead
        pidfd = None
    if pidfd is not None:
        try:
            poller = select.poll()  # not select(): it breaks on fds >= 1024 in a busy harness
            poller.register(pidfd, select.POLLIN)
            return not poller.poll(max(timeout_s, 0.0) * 1000)
        finally:
            os.close(pidfd)
    deadline, delay = time.monotonic() + timeout_s, 0.001
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is None:
        if time.monotonic() >= deadline:
            return True
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    return False


def _kill_group_and_reap(proc: subprocess.Popen, timed_out: bool) -> tuple[int, float]:
    """SIGKILL the program's whole process group, reap the leader; (returncode, CPU seconds used)."""
    if timed_out:
        # Kill the members before the leader: a leader that is `unshare --fork` then reaps its child itself.
        # Killed together, the child would be left to the system's init, and some containers' init never
        # reaps (one zombie per timed-out program, until pids run out).
        members = [pid for pid in _group_members(proc.pid) if pid != proc.pid]
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if members:
            _wait_for_exit(proc.pid, _GROUP_EXIT_WAIT_S)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # also hits anything the program started and left behind
    _, wait_status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(wait_status)  # tell Popen it is reaped
    # Wait until the group is empty, so callers never see a half-dead group. The group id stays reserved
    # while any member exists, so killing it again cannot hit a stranger.
    deadline = time.monotonic() + _GROUP_EXIT_WAIT_S
    while _group_members(proc.pid):
        if time.monotonic() > deadline:
            logger.warning("sandbox: process group %d outlived SIGKILL by %.0f s", proc.pid, _GROUP_EXIT_WAIT_S)
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.005)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def _group_members(pgid: int) -> list[int]:
    """Pids in process group `pgid` (Linux /proc; the 3rd field after the command name is the group)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return []  # the common case, without reading /proc
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue  # it exited while we looked
            if int(fields[2]) == pgid:
                members.append(int(entry))
    return members


def _read_capped(path: Path, cap: int) -> str:
    # Read at most cap + 1 bytes: a program that wrote its whole file-size limit costs no harness memory.
    with open(path, "rb") as f:
        data = f.read(cap + 1)
    text = data[:cap].decode("utf-8", errors="replace")
    return text + f"\n[sandbox: output cut at {cap} bytes]" if len(data) > cap else text


def _remove_tree(root: Path) -> None:
    # The program may have made directories unreadable; undo that first (never following symlinks).
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            try:
                if not os.path.islink(path):
                    os.chmod(path, 0o700)
            except OSError:
                pass
    shutil.rmtree(root, ignore_errors=True)
