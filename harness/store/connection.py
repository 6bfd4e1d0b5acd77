"""Open the results SQLite file with the settings every reader and writer relies on, and run transactions.

WAL lets readers work while one writer writes; `busy_timeout` makes a second writer wait for the
lock instead of failing with "database is locked".
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from harness.errors import UserError

# Long enough to outlast any single write we make (a big eval's item records), short enough that a
# truly stuck writer surfaces as an error rather than a silent hang.
DEFAULT_BUSY_TIMEOUT_S = 60.0


def connect(path: Path, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """Open `path` (created if absent) in WAL mode; raise UserError if it cannot be a results store."""
    try:
        # isolation_level=None: the sqlite3 module must not open transactions behind our back;
        # every write goes through `write_transaction`, which says BEGIN IMMEDIATE itself.
        conn = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None)
    except sqlite3.Error as exc:
        raise UserError(
            f"cannot open results database {path}: {exc}; check the path and its permissions"
        ) from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        # The first real read is where SQLite notices a file that is not a database.
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        # Switching to WAL needs a lock, so do it only once per file (the mode is persistent).
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower()
            if mode != "wal":
                raise UserError(
                    f"results database {path} cannot use write-ahead logging (journal mode stays {mode!r}); "
                    "put results_dir on a local filesystem"
                )
        # NORMAL is safe with WAL against a crashed or killed process (a commit is all or nothing);
        # only a power cut can lose the last few commits, and a lost commit is a job that reruns.
        conn.execute("PRAGMA synchronous = NORMAL")
        # Off by default in SQLite, and the eval_runs -> scores/items cascade depends on it.
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        conn.close()
        if isinstance(exc, sqlite3.OperationalError):
            raise UserError(f"cannot open results database {path}: {exc}") from exc
        raise UserError(
            f"{path} is not a SQLite database ({exc}); move it away or point results_dir elsewhere"
        ) from exc
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One atomic write: BEGIN IMMEDIATE, commit on success, roll back on any exception.

    IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so two writers never
    both read, then both try to upgrade to a write lock and one fails with SQLITE_BUSY.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextlib.contextmanager
def read_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A consistent snapshot across several SELECTs; nests inside an open transaction as a no-op."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN DEFERRED")
    try:
        yield conn
    finally:
        # A read-only transaction has nothing to commit; ending it releases the WAL snapshot.
        conn.execute("COMMIT")
