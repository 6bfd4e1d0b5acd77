"""Ending a process without the interpreter's teardown (job children, the atax command): exit handlers
still run, buffered output still comes out, and the status is the one sys.exit would give."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(("argument", "status", "stderr"), [
    ("'error: a message'", 1, "error: a message\n"), ("2", 2, ""), ("None", 0, ""), ("0", 0, "")])
def test_exit_now_runs_exit_handlers_flushes_and_keeps_the_status(tmp_path, argument, status, stderr):
    marker = tmp_path / "handler-ran"
    code = (
        "import atexit, sys\n"
        "from harness.fast_exit import exit_code, exit_now\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').write('yes'))\n"
        "sys.stdout.write('buffered, no newline')\n"
        "try:\n"
        f"    sys.exit({argument})\n"
        "except SystemExit as exc:\n"
        "    exit_now(exit_code(exc))\n"
        "print('not reached')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (status, "buffered, no newline", stderr)
    assert marker.read_text() == "yes"
