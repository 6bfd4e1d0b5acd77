"""Hostile programs, one per category of attack on the sandbox: on the verdict (a wrong program trying to
be scored as passed) and on the boundary (files created outside, secrets read). Each wrong program here
would pass, or would have written outside, if its attack worked.

All programs of a level run as one batch; every test then checks its program's verdict, that nothing
appeared outside the sandbox, that no secret was printed, and that the harness has no stray children.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.sandbox import ExecutionResult, os_boundary_problem, run_programs

SECRET = "root-only-secret-7f3a"
WRONG = "def add(a, b):\n    return a - b\n"
TESTS = "\ndef check(candidate):\n    assert candidate(2, 3) == 5\n\ncheck(add)\n"
FAIL_CLOSED = {"failed", "timeout", "error"}  # anything but "passed"


@dataclass(frozen=True)
class Host:
    """What the programs attack: a directory they must not write to and a file only root may read."""

    outside: Path
    secret: Path


def forging(attack: str) -> Callable[[Host], str]:
    """A wrong solution, an attack meant to make it pass, then the tests."""
    return lambda host: WRONG + attack + TESTS


ESCAPE = "'../' * 30 + {o!r}.lstrip('/')"  # a relative path that climbs from anywhere to the outside dir

PROGRAMS: dict[str, Callable[[Host], str]] = {
    # Walk every frame (the bootstrap's too) for anything token-like, write it to every fd, leave with 0.
    "frame_walking": forging(
        "import sys, os\n_add = add\ndef add(a, b):\n    f = sys._getframe()\n    while f is not None:\n"
        "        for v in [*f.f_locals.values(), *f.f_globals.values()]:\n"
        "            if isinstance(v, (str, bytes)) and 16 <= len(v) <= 128:\n"
        "                for fd in range(64):\n                    try:\n"
        "                        os.write(fd, (v if isinstance(v, bytes) else v.encode()) + b'\\n')\n"
        "                    except Exception:\n                        pass\n        f = f.f_back\n"
        "    for leave in (lambda: os._exit(0), lambda: sys.exit(0)):\n        try:\n            leave()\n"
        "        except Exception:\n            pass\n    return _add(a, b)\n"),
    "gc_objects": forging(
        "import gc\nfor get in (gc.get_objects, lambda: gc.get_referrers(add), lambda: gc.get_referents(add)):\n"
        "    try:\n        for o in get():\n            if callable(o) and getattr(o, '__name__', '') == '_exit':\n"
        "                o(0)\n    except PermissionError:\n        pass\n"
        "gc.callbacks.append(lambda *a: __import__('os')._exit(0))\n"),
    # A tracer that rewrites add's argument (3.11 writes f_locals back after a trace call), and a profiler.
    "settrace_setprofile": forging(
        "import sys, threading\ndef rewrite(frame, event, arg):\n"
        "    if event == 'line' and frame.f_code.co_name == 'add':\n"
        "        frame.f_locals['b'] = -frame.f_locals['b']\n    return rewrite\n"
        "for install in (sys.settrace, sys.setprofile, threading.settrace, threading.setprofile):\n"
        "    try:\n        install(rewrite)\n    except PermissionError:\n        pass\n"
        "sys._getframe().f_trace = rewrite\n"),
    "proc_self_mem": forging(  # also through a symlink: /dev/fd -> /proc/self/fd
        "import os\nfor path, flags in (('/proc/self/mem', os.O_RDWR), ('/proc/self/mem', os.O_RDONLY),\n"
        "                    ('/dev/fd/../mem', os.O_RDWR), ('/proc/1/mem', os.O_RDWR)):\n    try:\n        fd = os.open(path, flags)\n"
        "        os.lseek(fd, id(add), 0)\n        print(os.read(fd, 16))\n        os.write(fd, b'\\0' * 16)\n"
        "    except (OSError, PermissionError, OverflowError):\n        pass\n"),
    # Fresh builtin modules (whole posix, _signal, _thread) by every route, then use what they would give.
    "recreated_builtin_modules": lambda h: WRONG + (
        "import _imp, sys, importlib, importlib.machinery as m\nfresh = []\n"
        "for name in ('posix', '_signal', '_thread'):\n"
        "    fresh.append(_imp.create_builtin(m.ModuleSpec(name, None)))\n    del sys.modules[name]\n"
        "    fresh.append(importlib.import_module(name))\n"
        "for mod in fresh:\n    for attack in ("
        f"lambda: mod.mkfifo({str(h.outside / 'fifo')!r}), lambda: mod.mknod({str(h.outside / 'node')!r}),\n"
        "                   lambda: mod.signal(14, lambda *a: mod._exit(0)),\n"
        "                   lambda: mod.start_new_thread(lambda: None, ()), lambda: mod._exit(0)):\n"
        "        try:\n            attack()\n        except (AttributeError, PermissionError, OSError):\n"
        "            pass\n") + TESTS,
    "dir_fd_and_at_calls": lambda h: WRONG + (
        "import os\nos.mkdir('deep')\nd = os.open('deep', os.O_RDONLY)\n"
        f"escape = {ESCAPE.format(o=str(h.outside))}\n"
        "for attack in (lambda: os.open(escape + '/via_open', os.O_CREAT | os.O_WRONLY, dir_fd=d),\n"
        "               lambda: os.mkdir(escape + '/via_mkdir', dir_fd=d),\n"
        "               lambda: os.rename('deep', escape + '/via_rename', src_dir_fd=None, dst_dir_fd=d),\n"
        "               lambda: os.symlink('/etc', escape + '/via_symlink', dir_fd=d),\n"
        "               lambda: (os.chdir('deep'), os.open('../' + escape + '/via_chdir', os.O_CREAT)),\n"
        "               lambda: os.mkfifo(escape + '/via_mkfifo', dir_fd=d)):\n"
        "    try:\n        attack()\n    except (OSError, PermissionError):\n        pass\n") + TESTS,
    "mkfifo_mknod": lambda h: WRONG + (
        "import os, stat\n"
        f"for attack in (lambda: os.mkfifo({str(h.outside / 'fifo')!r}),\n"
        f"               lambda: os.mknod({str(h.outside / 'node')!r}, stat.S_IFREG | 0o600),\n"
        "               lambda: os.mknod('null', stat.S_IFCHR | 0o666, os.makedev(1, 3)),\n"
        "               lambda: os.mkfifo('fifo')):\n"
        "    try:\n        attack()\n    except (OSError, PermissionError):\n        pass\n") + TESTS,
    "symlink_hardlink": lambda h: WRONG + (
        "import os\n"
        f"for src, dst in (({str(h.secret)!r}, 'hard'), ('/etc/shadow', 'shadow'), ('x', {str(h.outside / 'l')!r})):\n"
        "    for make in (os.link, os.symlink):\n        try:\n            make(src, dst)\n"
        "            print(open(dst).read())\n        except (OSError, PermissionError):\n            pass\n") + TESTS,
    "ctypes": forging(
        "import importlib.util, glob, sys\nfor attack in (lambda: __import__('ctypes').CDLL(None)._exit(0),\n"
        "                lambda: importlib.util.module_from_spec(importlib.util.spec_from_file_location(\n"
        "                    '_ctypes', glob.glob(sys.base_prefix + '/lib/python3*/lib-dynload/_ctypes*')[0]))):\n"
        "    try:\n        attack()\n    except (ImportError, PermissionError, IndexError):\n        pass\n"),
    "early_exit_os_exit": forging("import os\nos._exit(0)\n"),
    "early_exit_sys_exit": forging("import sys\nsys.exit(0)\n"),
    "early_exit_from_check": forging(
        "_add = add\ndef add(a, b):\n    raise SystemExit(0)\n"),
    "early_exit_signal_handler": forging(
        "import os, signal\ntry:\n    signal.signal(signal.SIGALRM, lambda *a: os._exit(0))\n"
        "except PermissionError:\n    pass\nsignal.setitimer(signal.ITIMER_REAL, 0.05)\n"
        "def add(a, b):\n    while True:\n        pass\n"),
    # Hooks that run after the failing assert, and an exception whose printing raises SystemExit(0).
    "atexit_excepthook": forging(
        "import atexit, os, sys\natexit.register(lambda: os._exit(0))\n"
        "def hook(*args):\n    raise SystemExit(0)\nsys.excepthook = sys.unraisablehook = hook\n"
        "class Lie(AssertionError):\n    def __str__(self):\n        raise SystemExit(0)\n"
        "_add = add\ndef add(a, b):\n    raise Lie()\n"),
    # PYTHONINSPECT: a failure that escaped the bootstrap would open the prompt, which exits 0 on EOF.
    "inspect_mode_interrupt": forging(
        "import os, sys, _thread\nos.environ['PYTHONINSPECT'] = '1'\nclass Out:\n"
        "    def __init__(self, real):\n        self.real = real\n    def write(self, text):\n"
        "        return self.real.write(text)\n    def flush(self):\n        _thread.interrupt_main()\n"
        "sys.stdout, sys.stderr = Out(sys.stdout), Out(sys.stderr)\n"),
    "threads_and_code_swap": forging(
        "import threading\nfor attack in (lambda: threading.Thread(target=lambda: None).start(),\n"
        "               lambda: setattr(add, '__code__', (lambda a, b: a + b).__code__)):\n"
        "    try:\n        attack()\n    except (PermissionError, RuntimeError):\n        pass\n"),
    "read_root_only_files": lambda h: (
        "found = []\n"
        f"for path in ({str(h.secret)!r}, '/etc/shadow', '/root/.bash_history', '/proc/1/environ'):\n"
        "    try:\n        found.append(open(path).read())\n    except OSError:\n        pass\n"
        "print(found)\n"),
}


@pytest.fixture(scope="module", params=["os", "process"])
def batch(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          ) -> tuple[str, Host, dict[str, ExecutionResult]]:
    level = request.param
    if level == "os" and os_boundary_problem() is not None:
        pytest.skip(f"no OS sandbox on this machine: {os_boundary_problem()}")
    base = tmp_path_factory.mktemp(f"hostile-{level}")
    host = Host(base / "outside", base / "secret.txt")
    host.outside.mkdir()
    host.secret.write_text(SECRET)
    host.secret.chmod(0o600)
    names = sorted(PROGRAMS)
    results = run_programs([PROGRAMS[name](host) for name in names], workers=2, timeout_s=2.0, level=level)
    return level, host, dict(zip(names, results, strict=True))


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_hostile_program_gains_nothing(name: str, batch: tuple[str, Host, dict[str, ExecutionResult]]) -> None:
    level, host, results = batch
    result = results[name]
    if name == "read_root_only_files":
        assert result.status == "passed", result.stderr  # it only reads and prints
        if level == "os" or os.geteuid() != 0:  # `process` keeps the harness's uid: root reads everything
            assert SECRET not in result.stdout and "root:" not in result.stdout, result.stdout
    else:
        assert result.status in FAIL_CLOSED, f"{name} forged a pass at level {level}: {result.stdout[-300:]}"
        assert result.status != "error", result.stderr[-600:]  # it ran and failed, the sandbox did not break
    assert sorted(p.name for p in host.outside.iterdir()) == [], "a file appeared outside the sandbox"
    assert host.secret.read_text() == SECRET and stat.S_IMODE(host.secret.stat().st_mode) == 0o600
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no child process of the harness is left, not even a zombie


def test_the_same_programs_with_a_correct_solution_pass() -> None:
    """Control: the attacks above are not what fails them; with `a + b` the forging ones pass."""
    host = Host(Path("/nonexistent-outside"), Path("/nonexistent-secret"))
    names = ["threads_and_code_swap", "settrace_setprofile", "gc_objects", "ctypes", "proc_self_mem"]
    codes = [PROGRAMS[name](host).replace("return a - b", "return a + b") for name in names]
    results = run_programs(codes, workers=2, timeout_s=2.0)
    assert {name: r.status for name, r in zip(names, results, strict=True)} == dict.fromkeys(names, "passed"), \
        [r.stderr[-300:] for r in results]


def test_a_completion_that_swallows_the_tests_as_text_fails() -> None:
    """Appended as text, tests can be turned into data by a completion that opens a string they close."""
    from suites.knowledge.code_metric import code_execution_scope, pass_at_k, tests_intact

    tests = 'assert add(2, 3) == 5  # """\n'
    swallowing = WRONG + 'notes = """'  # the whole assert becomes the string's text: exits 0 if run
    assert run_programs([f"{swallowing}\n{tests}"])[0].passed  # run, it would pass: the attack is real
    assert not tests_intact(swallowing, tests)
    assert tests_intact(WRONG, tests) and tests_intact("def add(a, b):\n    return a + b", TESTS)
    with code_execution_scope():
        assert pass_at_k([tests, tests], [swallowing, WRONG.replace("a - b", "a + b")]) == {"pass@1": 0.5}
