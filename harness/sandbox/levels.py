"""Sandbox levels: which boundary model-written code gets on this machine, and the user's opt-in to less.

- `os`: the operating system's boundary (confine.py) plus the in-process guard (bootstrap.py).
- `process`: rlimits and the in-process guard only, as the program's own user: for machines without
  Linux namespaces. Only with ATAX_SANDBOX_LEVEL=process, never chosen silently.

The level a run used is stored with its scores (meta `sandbox_level`) and `atax doctor` shows this
machine's.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Literal

from harness.errors import UserError

Level = Literal["os", "process"]
LEVELS: tuple[Level, ...] = ("os", "process")
LEVEL_ENV = "ATAX_SANDBOX_LEVEL"
# What the probe program checks: it really is uid 65534 as PID 1 of its own namespace, sees neither /proc
# nor the harness's files, and has only a loopback network interface.
_PROBE = ("import os, socket\nassert os.getuid() == 65534 and os.getpid() == 1, (os.getuid(), os.getpid())\n"
          f"assert not os.path.exists('/proc/self') and not os.path.exists({__file__!r})\n"
          "assert [n for _, n in socket.if_nameindex()] == ['lo']\nprint('isolated')")

_probe_lock = threading.Lock()
_probed: list[str | None] = []  # [] until probed, then [None] (works) or [why not]


def os_boundary_problem() -> str | None:
    """None when the `os` level works here, else why not (probed once per process, ~0.1 s)."""
    with _probe_lock:
        if not _probed:
            _probed.append(_probe())
        return _probed[0]


def _probe() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"namespaces are Linux-only; this is {sys.platform}"
    from harness.sandbox.runner import run_program

    result = run_program(_PROBE, timeout_s=10.0, level="os")
    if result.passed and result.stdout.strip() == "isolated":
        return None
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else f"the probe program ended {result.status} ({result.returncode})"


def requested_level() -> Level | None:
    """The level the user asked for with ATAX_SANDBOX_LEVEL, if any."""
    value = os.environ.get(LEVEL_ENV, "").strip()
    if not value:
        return None
    if value not in LEVELS:
        raise UserError(f"{LEVEL_ENV}={value!r} is not a sandbox level; use one of: {', '.join(LEVELS)}")
    return value  # type: ignore[return-value]


def sandbox_level() -> Level:
    """The level model-written code runs at here; UserError (one line) when it must not run at all."""
    requested = requested_level()
    if requested == "process":
        return "process"
    problem = os_boundary_problem()
    if problem is None:
        return "os"
    raise UserError(f"refusing to run model-written code: this machine cannot give it the operating-system "
                    f"sandbox ({problem}); set {LEVEL_ENV}=process to run it with rlimits and in-process "
                    "guards only (weaker, recorded with the scores)")
