"""Run model-written Python programs (a completion plus its tests) in a sandboxed subprocess and score them.

Each program runs as `python -s [-S] bootstrap.py` in a new session, with a scrubbed environment, under
rlimits and the bootstrap's audit-hook guard, and at the `os` level (levels.py) behind the operating
system's boundary (confine.py): own mount/PID/network/IPC/UTS namespaces, a read-only view of only the
system and Python directories, a private size-limited /tmp as its cwd, uid 65534 without capabilities,
killed with its parent.

A program has passed when it exits 0 after the bootstrap said "started" (why that cannot be forged:
bootstrap.py). Its time limit is CPU time (RLIMIT_CPU, and the CPU its processes used), so a verdict does
not depend on machine load; a generous wall-clock limit only stops programs that sleep or block.

Why not `python -I`: it implies -E, which would ignore PYTHONHASHSEED and make set/dict-of-str order (and
so some verdicts) vary between runs. The environment is built from scratch here, so -E adds nothing; -s
drops the user site directory and -S, unless `Limits.site_packages`, all installed packages.

Linux only: it relies on /proc, process groups and, at the `os` level, namespaces.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
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

from harness.sandbox.levels import Level, sandbox_level
from harness.sandbox.limits import Limits

logger = logging.getLogger(__name__)

Status = Literal["passed", "failed", "timeout", "error"]
BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
_CHILD_PATH = "/usr/local/bin:/usr/bin:/bin"
_GROUP_EXIT_WAIT_S = 1.0
# Top-level directories a program's interpreter may need (shared libraries, timezone and locale data).
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


@dataclass(frozen=True)
class ExecutionResult:
    """How one program ended. `error` means the sandbox failed before the program started."""

    status: Status
    returncode: int | None  # negative: killed by that signal; 128 + N: the same, relayed at the `os` level
    stdout: str  # at most Limits.output_bytes of it, plus a note when cut
    stderr: str
    duration_s: float  # wall clock, for information only: no verdict depends on it
    cpu_s: float = 0.0  # CPU seconds of all its processes
    level: Level | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def run_program(code: str, *, timeout_s: float = 10.0, limits: Limits | None = None,
                level: Level | None = None) -> ExecutionResult:
    """Run `code` (e.g. prompt + completion + tests) in the sandbox; never raises for what the code does.

    `timeout_s` is CPU seconds. `level` defaults to what `sandbox_level()` allows here (which raises
    UserError where no OS boundary is available and the user did not opt into a weaker level).
    """
    limits = limits or Limits()
    level = level or sandbox_level()
    root = Path(tempfile.mkdtemp(prefix="atax-sandbox-"))
    try:
        work = root / "work"  # the program's cwd at the `process` level; at `os`, the mount point of its root
        work.mkdir()
        program = root / "program.py"
        program.write_text(code, encoding="utf-8")
        with open(root / "stdout", "wb") as out, open(root / "stderr", "wb") as err, \
                open(root / "status", "wb") as status:
            bootstrap = _compiled_bootstrap()
            config = {"level": level, "work_dir": str(work), "new_root": str(work), "program": str(program),
                      "status_fd": status.fileno(), "rlimits": limits.rlimits(timeout_s),
                      "harness_pid": os.getpid(), "bootstrap_dir": os.path.dirname(bootstrap),
                      "read_only": _read_only_paths(limits), "tmp_bytes": limits.work_dir_bytes}
            interpreter = [sys.executable, "-s", *([] if limits.site_packages else ["-S"])]
            start = time.monotonic()
            try:
                proc = subprocess.Popen([*interpreter, bootstrap, marshal.dumps(config).hex()], cwd=work,
                                        env=_child_env(level, work), stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=err, pass_fds=(status.fileno(),),
                                        start_new_session=True)  # its own process group, to kill as one
            except OSError as e:
                return ExecutionResult("error", None, "", f"sandbox: could not start python: {e}", 0.0, 0.0, level)
            wall_timed_out = True  # until the wait says otherwise: an interrupted harness still kills it
            try:
                wall_timed_out = _wait_for_exit(proc.pid, limits.wall_limit_s(timeout_s))
            finally:
                returncode, cpu_s = _kill_group_and_reap(proc, wall_timed_out)
            duration_s = time.monotonic() - start
        verdict = _verdict((root / "status").read_text(errors="replace"), returncode, cpu_s, wall_timed_out,
                           limits.cpu_limit_s(timeout_s))
        return ExecutionResult(verdict, returncode, _read_capped(root / "stdout", limits.output_bytes),
                               _read_capped(root / "stderr", limits.output_bytes), duration_s, cpu_s, level)
    finally:
        _remove_tree(root)


def _verdict(status_text: str, returncode: int, cpu_s: float, wall_timed_out: bool, cpu_limit_s: int) -> Status:
    # At RLIMIT_CPU (soft = hard) the kernel sends SIGKILL; relayed as 128 + 9 at the `os` level. The CPU
    # time rusage reports for such a program comes out a little short of the limit (0.93-1.04 s of 1 s
    # seen here), hence the margin; any other SIGKILL (the OOM killer) comes with less CPU.
    killed = returncode in (-signal.SIGKILL, -signal.SIGXCPU, 128 + signal.SIGKILL, 128 + signal.SIGXCPU)
    if wall_timed_out or (killed and cpu_s >= 0.75 * cpu_limit_s):
        return "timeout"
    if not status_text.startswith("started"):
        return "error"  # the sandbox never reached the program: stderr says why
    return "passed" if returncode == 0 else "failed"


def run_programs(codes: list[str], *, workers: int | None = None, timeout_s: float = 10.0,
                 limits: Limits | None = None, level: Level | None = None) -> list[ExecutionResult]:
    """Run many programs, `workers` at a time (default: one per usable CPU); results in input order."""
    if not codes:
        return []
    level = level or sandbox_level()  # resolved once here rather than in every worker thread
    workers = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=min(workers, len(codes)), thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda code: run_program(code, timeout_s=timeout_s, limits=limits, level=level),
                             codes))


_compiled_lock = threading.Lock()
_compiled: dict[int, str] = {}  # pid -> bootstrap.pyc of this harness process (a forked child makes its own)


def _compiled_bootstrap() -> str:
    """bootstrap.py and confine.py compiled once into a private directory; the source where that fails.

    Python compiles a script on every start (~8 ms of each program's CPU here); it runs a .pyc as it
    is, and imports confine.pyc beside it without a source.
    """
    with _compiled_lock:
        if os.getpid() not in _compiled:
            _compiled[os.getpid()] = _compile_bootstrap()
        return _compiled[os.getpid()]


def _compile_bootstrap() -> str:
    import atexit
    import py_compile

    directory, owner = tempfile.mkdtemp(prefix="atax-sandbox-code-"), os.getpid()
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(directory, ignore_errors=True))
    try:
        for name in ("bootstrap", "confine"):
            py_compile.compile(str(BOOTSTRAP.with_name(f"{name}.py")), os.path.join(directory, f"{name}.pyc"),
                               doraise=True)
    except (OSError, py_compile.PyCompileError) as e:
        logger.warning("sandbox: cannot precompile the bootstrap (%s); programs start a little slower", e)
        return str(BOOTSTRAP)
    return os.path.join(directory, "bootstrap.pyc")


def _read_only_paths(limits: Limits) -> list[str]:
    """What the `os` level shows the program (read-only): system directories and this Python's own."""
    paths = [p for p in _SYSTEM_DIRS if os.path.lexists(p)]
    paths += [sys.base_prefix, os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))]
    if limits.site_packages:  # the environment's packages, wherever its sys.path points
        paths += [sys.prefix, *(p for p in sys.path if p and os.path.isdir(p))]
    kept: list[str] = []
    for path in sorted({os.path.abspath(p) for p in paths}):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept if not os.path.islink(k)):
            kept.append(path)
    return kept


def _child_env(level: Level, work: Path) -> dict[str, str]:
    # Built from nothing: no proxies, tokens or PYTHON* settings of the harness leak into the program.
    home = "/tmp" if level == "os" else str(work)
    return {"PATH": _CHILD_PATH, "LANG": "C.UTF-8", "HOME": home, "TMPDIR": home,
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


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
        # Kill the members before the leader: a leader that waits for the program (`os` level) then reaps it.
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
