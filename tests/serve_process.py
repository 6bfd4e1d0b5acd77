"""`atax serve MODEL` as a separate process on a free loopback port, for tests of the command itself
(the judged suites serve a local judge from a thread instead: harness/evaluate/local_judge.py)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

from harness.errors import UserError

# Loopback traffic must never go through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def served(model: str, *args: str, env: dict[str, str] | None = None, timeout_s: float = 180) -> Iterator[str]:
    """Yield the API base (http://127.0.0.1:PORT/v1) of `atax serve MODEL ARGS` once it answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "harness", "serve", model, "--port", str(port), "--quiet", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                error = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
                raise UserError(f"`atax serve {model}` exited with {proc.returncode}"
                                f"{': ' + error[-1] if error else ''}")
            with contextlib.suppress(OSError):
                with _OPENER.open(f"{base}/health", timeout=2):
                    break
            if time.monotonic() > deadline:
                raise UserError(f"`atax serve {model}` did not answer within {timeout_s:g} s")
            time.sleep(0.2)
        yield f"{base}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
