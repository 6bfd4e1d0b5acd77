"""The results database schema: the DDL of each version and the ordered migrations between them.

`MIGRATIONS[i]` takes a database from version i to i + 1; version 0 is an empty file, so creating
a fresh store and upgrading an old one are the same code path. To change the schema, append a
function here (never edit a released one) and the tables it touches in `harness/store/store.py`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.errors import UserError
from harness.store.connection import write_transaction

Migration = Callable[[sqlite3.Connection], None]

_V1_DDL = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE experiments (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    config_json TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE checkpoints (
    key          TEXT PRIMARY KEY,
    path         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    provenance   TEXT NOT NULL DEFAULT '{}',
    created_at   TEXT NOT NULL
);

-- One evaluation of one checkpoint on one benchmark of one suite. It owns its scores and item
-- records; re-evaluating deletes the old row (cascading) and inserts a new one in one transaction.
-- AUTOINCREMENT so a replaced eval's id is never reused: an id held by a reader can only go
-- missing, never silently point at different results.
CREATE TABLE eval_runs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    checkpoint TEXT NOT NULL REFERENCES checkpoints(key),
    suite      TEXT NOT NULL,
    benchmark  TEXT NOT NULL,
    experiment TEXT REFERENCES experiments(name),
    method     TEXT,
    seed       INTEGER,
    meta       TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    UNIQUE (checkpoint, suite, benchmark)
);

CREATE TABLE scores (
    eval_id INTEGER NOT NULL REFERENCES eval_runs(id) ON DELETE CASCADE,
    metric  TEXT NOT NULL,
    value   REAL NOT NULL,
    stderr  REAL,
    n       INTEGER,
    meta    TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (eval_id, metric)
);

CREATE TABLE items (
    eval_id    INTEGER NOT NULL REFERENCES eval_runs(id) ON DELETE CASCADE,
    item_id    TEXT NOT NULL,
    item_hash  TEXT NOT NULL,
    prediction TEXT,
    target     TEXT,
    score      REAL,
    extra      TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (eval_id, item_id)
);

CREATE TABLE curves (
    run_key TEXT NOT NULL,
    split   TEXT NOT NULL CHECK (split IN ('train', 'validation')),
    step    INTEGER NOT NULL,
    loss    REAL NOT NULL,
    tokens  INTEGER,
    PRIMARY KEY (run_key, split, step)
);

CREATE TABLE jobs (
    key        TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    error      TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Flat views so reports and CSV readers need no joins.
CREATE VIEW score_view AS
SELECT e.id AS eval_id, e.experiment, e.checkpoint, e.method, e.seed, e.suite, e.benchmark,
       s.metric, s.value, s.stderr, s.n, s.meta, e.meta AS run_meta, e.created_at
FROM scores AS s JOIN eval_runs AS e ON e.id = s.eval_id;

CREATE VIEW item_view AS
SELECT e.id AS eval_id, e.experiment, e.checkpoint, e.method, e.seed, e.suite, e.benchmark,
       i.item_id, i.item_hash, i.prediction, i.target, i.score, i.extra
FROM items AS i JOIN eval_runs AS e ON e.id = i.eval_id;
"""


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    """Run `script` statement by statement inside the caller's transaction.

    `executescript` would COMMIT the open transaction first; splitting on ";" would break on a
    comment, so let SQLite's own tokenizer say where each statement ends.
    """
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement at the end of a migration script: {statement!r}")


def _create_v1(conn: sqlite3.Connection) -> None:
    _execute_script(conn, _V1_DDL)


# v2: LLM-judge suites. A judgment is cached by what was asked (judge model + hash of the exact
# request) so an interrupted or repeated run never pays for the same answer twice; `score` is NULL
# when the judge's text holds no usable rating (counted as missing, never as 0). Generations are
# the model's answers, reused across runs with the same target and generation parameters.
_V2_DDL = """
CREATE TABLE judgments (
    judge_model  TEXT NOT NULL,
    prompt_hash  TEXT NOT NULL,
    repeat_index INTEGER NOT NULL DEFAULT 0,
    prompt       TEXT NOT NULL,
    response     TEXT NOT NULL,
    score        REAL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (judge_model, prompt_hash, repeat_index)
);

CREATE TABLE generations (
    target_key  TEXT NOT NULL,
    suite       TEXT NOT NULL,
    question_id TEXT NOT NULL,
    turn        INTEGER NOT NULL,
    params_hash TEXT NOT NULL,
    text        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (target_key, suite, question_id, turn, params_hash)
);
"""


def _add_judgments_v2(conn: sqlite3.Connection) -> None:
    _execute_script(conn, _V2_DDL)


# v3: one checkpoint may be evaluated under several labels (experiment, method row, seed): two
# experiments sharing a results directory, or two rows of one experiment that give the same
# checkpoint, each keep their own eval runs (the pipeline copies a finished eval instead of
# recomputing it). The unique key grows by the label; SQLite cannot drop a constraint, so the
# table is rebuilt (foreign keys are off during migrations; see ensure_schema).
_EVAL_RUNS_V3 = """
CREATE TABLE eval_runs_v3 (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    checkpoint TEXT NOT NULL REFERENCES checkpoints(key),
    suite      TEXT NOT NULL,
    benchmark  TEXT NOT NULL,
    experiment TEXT REFERENCES experiments(name),
    method     TEXT,
    seed       INTEGER,
    meta       TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
"""
_EVAL_RUNS_V3_INDEXES = """
CREATE UNIQUE INDEX eval_runs_label ON eval_runs (
    checkpoint, suite, benchmark, IFNULL(experiment, ''), IFNULL(method, ''), IFNULL(CAST(seed AS TEXT), ''));
CREATE INDEX eval_runs_eval_key ON eval_runs (json_extract(meta, '$.eval_key'));
"""


def _label_eval_runs_v3(conn: sqlite3.Connection) -> None:
    views = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'view'").fetchall()
    for name, _ in views:  # they name eval_runs; a rename checks them, so they step aside
        conn.execute(f'DROP VIEW "{name}"')
    sequence = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'eval_runs'").fetchone()
    _execute_script(conn, _EVAL_RUNS_V3)
    conn.execute("INSERT INTO eval_runs_v3 SELECT id, checkpoint, suite, benchmark, experiment, method, seed, meta, "
                 "created_at FROM eval_runs")
    conn.execute("DROP TABLE eval_runs")
    conn.execute("ALTER TABLE eval_runs_v3 RENAME TO eval_runs")
    # ids of deleted runs stay unused (AUTOINCREMENT's promise), also when no run is left
    current = conn.execute("SELECT max(seq) FROM sqlite_sequence WHERE name = 'eval_runs'").fetchone()[0]
    conn.execute("DELETE FROM sqlite_sequence WHERE name = 'eval_runs'")
    conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('eval_runs', ?)",
                 (max(current or 0, sequence[0] if sequence else 0),))
    _execute_script(conn, _EVAL_RUNS_V3_INDEXES)
    for _, sql in views:
        conn.execute(sql)


MIGRATIONS: tuple[Migration, ...] = (_create_v1, _add_judgments_v2, _label_eval_runs_v3)
SCHEMA_VERSION = len(MIGRATIONS)


def read_schema_version(conn: sqlite3.Connection, path: Path) -> int:
    """The version recorded in `meta`, 0 for an empty file; UserError for someone else's database."""
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if has_meta is None:
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
            return 0
        raise UserError(
            f"{path} is a SQLite database but not an atax results store (no meta table); "
            "move it away or point results_dir elsewhere"
        )
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None or not str(row[0]).isdigit():
        raise UserError(
            f"{path} has no valid schema_version in its meta table; it is not a usable atax results store"
        )
    return int(row[0])


def _refuse_newer(version: int, known: int, path: Path) -> None:
    if version > known:
        raise UserError(
            f"{path} has results schema version {version}, newer than this atax knows ({known}); "
            "upgrade atax to read it"
        )


def ensure_schema(conn: sqlite3.Connection, path: Path, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the database to `len(migrations)`, running each missing step in order in one transaction.

    Returns the version the database had before. A failing migration rolls back every step, so the
    file is left at its old version, never between two.
    """
    target = len(migrations)
    version = read_schema_version(conn, path)
    _refuse_newer(version, target, path)
    if version == target:
        return version
    # Foreign keys off while tables are rebuilt (SQLite's documented procedure: with them on,
    # dropping the old table would cascade into its children); checked before committing.
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        with write_transaction(conn):
            # Read again under the write lock: another process may have migrated while we waited.
            version = read_schema_version(conn, path)
            _refuse_newer(version, target, path)
            for step in range(version, target):
                migrations[step](conn)
            broken = conn.execute("PRAGMA foreign_key_check").fetchone()
            if broken is not None:
                raise RuntimeError(f"schema migration left a dangling reference in table {broken[0]}")
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(target),),
            )
    finally:
        conn.execute("PRAGMA foreign_keys = ON")
    return version
