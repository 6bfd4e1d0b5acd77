"""The code sandbox: hostile programs are contained and scored, honest ones pass, batches run in parallel.

Every hostile program really runs; after each one the test checks that this process, its cwd, a canary
file outside the sandbox and its process table are untouched.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.sandbox import Limits, network_isolation_available, run_program, run_programs, runner

CANARY_TEXT = "precious\n"


@dataclass(frozen=True)
class Outside:
    """A directory outside the sandbox that no program may change."""

    dir: Path
    canary: Path
    cwd: str
    canary_mode: int


@pytest.fixture
def outside(tmp_path: Path) -> Outside:
    canary = tmp_path / "outside" / "canary.txt"
    canary.parent.mkdir()
    canary.write_text(CANARY_TEXT)
    return Outside(canary.parent, canary, os.getcwd(), stat.S_IMODE(canary.stat().st_mode))


@pytest.fixture(params=["namespaces", "guard_only"])
def isolation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the OS isolation this machine offers, and again as a machine without `unshare`."""
    if request.param == "guard_only":
        monkeypatch.setattr(runner, "_prefix", ())  # what the probe answers where unshare does not work
    return request.param


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
        "forged_status": lambda o: (  # scribble on every fd, then leave with 0: still no valid token
            "import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'0' * 32 + b'\\n')\n"
            "    except OSError:\n        pass\nos._exit(0)", failed),
        "infinite_print": lambda o: ("while True:\n    print('x' * 1000)", {"failed", "timeout"}),
    }


HOSTILE = _hostile_programs()


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_is_contained(name: str, outside: Outside, isolation: str) -> None:
    code, contained = HOSTILE[name](outside)
    result = run_program(code, timeout_s=2.0)
    assert result.status in contained, f"{name}: {result.status}, stderr: {result.stderr[-600:]}"
    assert_unharmed(outside)


def test_correct_program_passes() -> None:
    result = run_program("def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\nprint('ok')")
    assert (result.status, result.returncode, result.stdout) == ("passed", 0, "ok\n"), result.stderr


def test_wrong_program_fails_with_its_traceback() -> None:
    result = run_program("def add(a, b):\n    return a - b\n\nassert add(2, 3) == 5")
    assert result.status == "failed" and result.returncode == 1
    assert "AssertionError" in result.stderr and "add(2, 3)" in result.stderr  # the source line is shown


@pytest.mark.parametrize("exit_call", ["import sys; sys.exit(0)", "import os; os._exit(0)", "raise SystemExit"])
def test_exit_zero_before_the_asserts_is_not_a_pass(exit_call: str) -> None:
    result = run_program(f"{exit_call}\nassert False, 'the tests never ran'")
    assert (result.status, result.returncode) == ("failed", 0)


def test_infinite_loop_is_killed_at_the_timeout() -> None:
    result = run_program("while True:\n    pass", timeout_s=1.5)
    assert result.status == "timeout"
    assert 1.5 <= result.duration_s < 3.0


def test_memory_growth_that_touches_pages_fails_without_hurting_the_harness(outside: Outside) -> None:
    code = "x = []\nwhile True:\n    x.append(bytearray(10**7))"  # zero-filled: real resident memory
    result = run_program(code, timeout_s=20.0, limits=Limits(memory_bytes=256 << 20))
    assert result.status == "failed" and "MemoryError" in result.stderr
    assert_unharmed(outside)


def test_cpu_limit_counts_as_timeout() -> None:
    result = run_program("while True:\n    pass", timeout_s=20.0, limits=Limits(cpu_time_s=1))
    assert result.status == "timeout" and result.duration_s < 20.0  # the CPU limit fired, not the clock


def test_huge_output_is_capped_and_costs_the_harness_nothing(outside: Outside) -> None:
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run_program("print('x' * 10**8)\nprint('done')", timeout_s=5.0)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kib) / 1024
    assert result.status == "failed"  # the file-size limit stops the write; 'done' is never reached
    cap = Limits().output_bytes
    assert cap <= len(result.stdout) <= cap + 100 and "output cut" in result.stdout
    assert grown_mib < 20, f"the harness grew by {grown_mib:.0f} MiB reading the output"
    assert_unharmed(outside)


def test_socket_to_a_local_listener_never_connects(outside: Outside, isolation: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        # connect() directly: create_connection would already stop at the refused name lookup.
        result = run_program(f"import socket\nsocket.socket().connect(('127.0.0.1', {port}))")
        assert result.status == "failed"
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody ever connected
    assert_unharmed(outside)


def test_network_namespace_has_no_interfaces_when_available() -> None:
    # Checked without the guard's help: if_nameindex is not refused, it just sees the namespace.
    result = run_program("import socket\nassert [n for _, n in socket.if_nameindex()] == ['lo']")
    assert result.status == ("passed" if network_isolation_available() else "failed"), result.stderr


def test_process_group_is_gone_after_a_timeout(isolation: str) -> None:
    # /proc/self is the host's view even in a PID namespace: the program reports its real pid and group.
    code = ("stat = open('/proc/self/stat').read().rsplit(')', 1)[1].split()\n"
            "print(stat[2], open('/proc/self/stat').read().split()[0], flush=True)\n"
            "while True:\n    pass")
    result = run_program(code, timeout_s=1.0)
    assert result.status == "timeout"
    group, pid = map(int, result.stdout.split())
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)
    assert not Path(f"/proc/{pid}").exists()
    assert children_of(os.getpid()) == []


def test_honest_file_work_inside_the_sandbox_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATAX_TEST_SECRET_TOKEN", "do-not-leak")
    code = ("import os, shutil, tempfile\n"
            "open('a.txt', 'w').write('x')\nassert open('a.txt').read() == 'x'\n"
            "os.mkdir('d'); os.rename('a.txt', 'd/b.txt'); shutil.rmtree('d')\n"
            "with tempfile.NamedTemporaryFile('w') as f:\n    f.write('y')\n"
            "assert 'ATAX_TEST_SECRET_TOKEN' not in os.environ and os.environ['HOME'] == os.getcwd()\n"
            "print(os.getcwd())")
    result = run_program(code)
    assert result.status == "passed", result.stderr
    assert not Path(result.stdout.strip()).exists(), "the sandbox's temporary directory was not removed"


def test_string_hashing_is_deterministic() -> None:
    first, second = run_programs(["print(hash('alignment tax'))"] * 2)
    assert first.stdout == second.stdout != ""


def test_run_programs_keeps_order_and_runs_in_parallel() -> None:
    codes = [f"import time\ntime.sleep(1)\nprint({i})" for i in range(4)]
    start = time.monotonic()
    results = run_programs(codes, workers=2)
    elapsed = time.monotonic() - start
    assert [r.stdout for r in results] == ["0\n", "1\n", "2\n", "3\n"]
    assert all(r.status == "passed" for r in results)
    assert elapsed < 3.5, f"4 x 1 s on 2 workers took {elapsed:.1f} s: not parallel"


def test_run_programs_reports_each_verdict_in_place() -> None:
    results = run_programs(["assert True", "assert False", "import os; os._exit(0)", "while True: pass"],
                           workers=2, timeout_s=1.0)
    assert [r.status for r in results] == ["passed", "failed", "failed", "timeout"]


def test_a_sandbox_that_cannot_start_the_program_says_error() -> None:
    # 1 MiB of address space is too little for the bootstrap itself (it cannot map a module it loads).
    result = run_program("print('never')", limits=Limits(memory_bytes=1 << 20))
    assert result.status == "error" and "never" not in result.stdout
    assert result.stderr, "the reason must be in stderr"


@pytest.mark.realdata
def test_reference_solutions_of_the_real_benchmarks_pass(shared_data: Path) -> None:
    # The guard must not fail honest code: every reference solution in the HumanEval and MBPP samples passes.
    humaneval = [json.loads(line) for line in (shared_data / "humaneval" / "HumanEval.sample.jsonl").open()]
    mbpp = [json.loads(line) for line in (shared_data / "mbpp" / "mbpp.sample.jsonl").open()]
    codes = [p["prompt"] + p["canonical_solution"] + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n"
             for p in humaneval]
    codes += [m["test_setup_code"] + "\n" + m["code"] + "\n" + "\n".join(m["test_list"]) + "\n" for m in mbpp]
    results = run_programs(codes)
    failures = [(i, r.status, r.stderr[-300:]) for i, r in enumerate(results) if r.status != "passed"]
    assert codes and not failures


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="memory_bytes"):
        Limits(memory_bytes=0)
    assert Limits().cpu_limit_s(2.5) == 4
