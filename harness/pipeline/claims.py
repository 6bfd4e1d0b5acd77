"""Job claims: lock files on the results filesystem, so concurrent `atax run`s (and their Ray or
SLURM workers) never run the same job.

A claim is `<results>/jobs/<key>.claim`, created with O_CREAT|O_EXCL (atomic, on NFS too) and
holding its owner (run id, pid, host). The owner refreshes the file's mtime every
`heartbeat_s` while the job runs; a claim is expired, and may be broken by anyone, when its
mtime is older than `lease_s` (the owner hangs or its machine died) or when its owner's process
is gone from this host and the heartbeat has stopped.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from harness.pipeline.jobs import jobs_dir

LEASE_S = 120.0
HEARTBEAT_S = 5.0


def claim_path(results_dir: Path, key: str) -> Path:
    return jobs_dir(results_dir) / f"{key}.claim"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class Claims:
    """The claims this process holds under one results directory, kept alive by a heartbeat thread."""

    def __init__(self, results_dir: Path, lease_s: float = LEASE_S, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.results_dir = Path(results_dir)
        self.lease_s, self.heartbeat_s = lease_s, heartbeat_s
        self.owner = {"run": uuid.uuid4().hex, "pid": os.getpid(), "host": socket.gethostname()}
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="atax-claims-heartbeat", daemon=True)
        self._thread.start()

    def try_claim(self, key: str) -> bool:
        """True if this process now holds `key` (it was free, or its claim had expired)."""
        path = claim_path(self.results_dir, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._break_if_expired(path):
                    return False
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(self.owner))
            with self._lock:
                self._held.add(key)
            return True
        return False

    def release(self, key: str) -> None:
        with self._lock:
            self._held.discard(key)
        path = claim_path(self.results_dir, key)
        if _read(path).get("run") == self.owner["run"]:
            path.unlink(missing_ok=True)

    def claimed_by_other(self, key: str) -> bool:
        """Someone else holds a live claim on `key`."""
        path = claim_path(self.results_dir, key)
        return path.exists() and key not in self._held and not self._expired(path, _read(path))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for key in list(self._held):
            self.release(key)

    def _expired(self, path: Path, owner: dict) -> bool:
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            return True
        if age > self.lease_s:
            return True
        if not owner:  # being written right now, or garbage: give a writer a moment
            return age > 2 * self.heartbeat_s
        gone = owner.get("host") == socket.gethostname() and not _process_alive(int(owner.get("pid", 0)))
        return gone and age > 2 * self.heartbeat_s

    def _break_if_expired(self, path: Path) -> bool:
        owner = _read(path)
        if not self._expired(path, owner):
            return False
        stale = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex}")
        try:
            path.rename(stale)
        except OSError:  # another process broke it first
            return True
        if _read(stale) != owner:  # a fresh claim replaced the expired one meanwhile: put it back
            try:
                os.link(stale, path)
            except OSError:
                pass
        stale.unlink(missing_ok=True)
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._lock:
                held = list(self._held)
            for key in held:
                try:
                    os.utime(claim_path(self.results_dir, key))
                except OSError:
                    pass


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
