"""Ctrl-C (SIGINT) and SIGTERM for every command: stop within seconds with one line on stderr.

The first signal raises `Interrupted` in the main thread, so `finally` blocks and context managers
run as they would for an error (progress bars stop, servers and worker processes are closed,
temporary outputs are removed: every output is written to a temporary path and renamed, so
nothing half-written stays). Threads still finishing a request or a child still running a job
must not keep the process alive: a watchdog thread, woken at C level by the signal itself (even
while the main thread is busy inside a long C call), ends the process `GRACE_S` seconds later.
A second signal ends it at once. Finished work is kept either way: the same command resumes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

GRACE_S = 3.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):  # noqa: N818 (like KeyboardInterrupt, which it stands for)
    """Raised in the main thread by SIGINT/SIGTERM. A BaseException, like KeyboardInterrupt, so that
    `except Exception` blocks do not swallow it; not a KeyboardInterrupt, so that click does not
    turn it into "Aborted!" with exit code 1."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


_state = {"signalled": False, "reported": False}
_report_lock = threading.Lock()


def install() -> None:
    """Install the handlers (main thread of the CLI process only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    for signum in SIGNALS:
        signal.signal(signum, _on_signal)
    threading.Thread(target=_watchdog, args=(read_end,), name="atax-interrupt-watchdog", daemon=True).start()
    os.register_at_fork(after_in_child=_reset_in_child)


def report(signum: int) -> None:
    """The one line, printed once whoever gets there first (the main thread or the watchdog)."""
    with _report_lock:
        if _state["reported"]:
            return
        _state["reported"] = True
    name = signal.Signals(signum).name
    with contextlib.suppress(OSError, ValueError):
        if sys.stderr.isatty():  # a progress bar cut short leaves the cursor hidden: show it again
            sys.stderr.write("\x1b[?25h")
        sys.stderr.write(f"interrupted ({name}): stopped; finished work is kept, the same command resumes\n")
        sys.stderr.flush()


def exit_interrupted(exc: Interrupted) -> None:
    """End the process after the main thread's cleanup: one line, exit code 128 + signal.

    os._exit, not sys.exit: every `finally` has run by now, and interpreter shutdown would wait for
    threads still finishing requests and tear down torch, seconds on a loaded machine."""
    report(exc.signum)
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    os._exit(exc.exit_code)


def _on_signal(signum: int, frame: object) -> None:
    if _state["signalled"]:  # a second Ctrl-C: the user does not want to wait for cleanup
        _exit_now(signum)
    _state["signalled"] = True
    raise Interrupted(signum)


def _watchdog(read_end: int) -> None:
    wanted = {int(s) for s in SIGNALS}
    while True:
        try:
            received = os.read(read_end, 64)
        except OSError:
            return
        hits = [b for b in received if b in wanted]
        if hits:
            break
    time.sleep(GRACE_S)  # the main thread's cleanup normally ends the process well before this
    _exit_now(hits[0])


def _exit_now(signum: int) -> None:
    report(signum)
    os._exit(128 + signum)


def _reset_in_child() -> None:
    # A forked child (a data-loader worker, ...) has no watchdog thread and must not write its own
    # signals into the parent's wakeup pipe, nor raise Interrupted: give it the default behaviour.
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except (ValueError, OSError):
        pass
