"""End a process without the interpreter's teardown once its work is done.

With torch, transformers and lm-eval imported, a normal exit spends ~1.3 s tearing modules down and
collecting garbage after the last line of real work (more than a small eval job takes). Everything that
matters has happened by then: store transactions committed, outputs renamed into place. The exit
handlers still run (temporary directories, logging), then the process ends at once.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from typing import NoReturn


def exit_code(exc: SystemExit) -> int:
    """The status `sys.exit(arg)` would end the process with (a message means 1, as Python prints it)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"{exc.code}\n")
    return 1


def exit_now(code: int) -> NoReturn:
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
