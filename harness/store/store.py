"""The results store: experiments, checkpoints, eval runs with their scores and item records,
training curves and job states, in one SQLite file under the results directory.

Every write method is one transaction, so a crash or a concurrent reader never sees half of it.
One `ResultsStore` holds one connection; open one per process (or thread).
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from harness.errors import UserError
from harness.store import export
from harness.store.connection import DEFAULT_BUSY_TIMEOUT_S, connect, read_transaction, write_transaction
from harness.store.records import (
    JOB_STATES,
    SPLITS,
    CheckpointRecord,
    CurvePoint,
    EvalRun,
    ItemRecord,
    JobState,
    Score,
    ScoreRow,
)
from harness.store.schema import ensure_schema

if TYPE_CHECKING:
    import pandas as pd

RESULTS_DB_NAME = "results.sqlite"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _dumps(value: dict[str, Any]) -> str:
    # sort_keys: the same dict always gives the same text, so stored JSON can be compared and hashed.
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _loads(text: str | None) -> dict[str, Any]:
    return json.loads(text) if text else {}


class ResultsStore:
    """Typed access to `results.sqlite`; use as a context manager so the connection is closed."""

    def __init__(self, path: Path | str, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self._conn = connect(self.path, busy_timeout_s)
        try:
            ensure_schema(self._conn, self.path)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise UserError(f"results database {self.path} is damaged ({exc}); move it away (its results are "
                            "lost) or point --results elsewhere") from None
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def open(cls, results_dir: Path | str, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> ResultsStore:
        """The store at `<results_dir>/results.sqlite`, creating the directory and file if needed."""
        results_dir = Path(results_dir)
        if results_dir.exists() and not results_dir.is_dir():
            raise UserError(
                f"results_dir {results_dir} is a file, not a directory; point results_dir elsewhere"
            )
        results_dir.mkdir(parents=True, exist_ok=True)
        return cls(results_dir / RESULTS_DB_NAME, busy_timeout_s)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[ResultsStore]:
        """Reads inside this block all see the same committed state, whatever writers do meanwhile."""
        with read_transaction(self._conn):
            yield self

    # ---- health ------------------------------------------------------------------------------

    def integrity_problem(self) -> str | None:
        """None when SQLite's quick_check finds the file sound, else its first complaint."""
        try:
            rows = [r[0] for r in self._conn.execute("PRAGMA quick_check").fetchall()]
        except sqlite3.DatabaseError as exc:
            return str(exc)
        return None if rows == ["ok"] else f"{rows[0]}" + (f" (and {len(rows) - 1} more)" if len(rows) > 1 else "")

    def check_ready_to_write(self) -> None:
        """Raise UserError (one line) unless the store is sound and writable: called before a run
        starts any job, so a broken store costs no work."""
        problem = self.integrity_problem()
        if problem is not None:
            raise UserError(f"results database {self.path} is damaged ({problem}); move it away (its results "
                            "are lost) or point --results elsewhere")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("CREATE TABLE atax_write_probe (x)")
            finally:
                self._conn.execute("ROLLBACK")
        except sqlite3.DatabaseError as exc:
            raise UserError(f"results database {self.path} cannot be written ({exc}); check its permissions "
                            "and free disk space, or point --results elsewhere") from None

    # ---- experiments and checkpoints -------------------------------------------------------

    def add_experiment(self, name: str, config_json: str) -> int:
        """Register experiment `name` (or update its config) and return its id, stable across re-runs."""
        now = _now()
        with write_transaction(self._conn) as conn:
            conn.execute(
                "INSERT INTO experiments (name, config_json, created_at, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET config_json = excluded.config_json, updated_at = excluded.updated_at",
                (name, config_json, now, now),
            )
            return int(conn.execute("SELECT id FROM experiments WHERE name = ?", (name,)).fetchone()[0])

    def experiment_configs(self) -> dict[str, dict[str, Any]]:
        """name -> the config each experiment was last run with, in the order they were first added."""
        rows = self._conn.execute("SELECT name, config_json FROM experiments ORDER BY id").fetchall()
        return {name: _loads(config) for name, config in rows}

    def add_checkpoint(
        self, key: str, path: str | Path, kind: str, content_hash: str, provenance: dict[str, Any]
    ) -> None:
        """Record checkpoint `key`, replacing what was known about it (a rebuilt checkpoint moves or changes)."""
        with write_transaction(self._conn) as conn:
            conn.execute(
                "INSERT INTO checkpoints (key, path, kind, content_hash, provenance, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET path = excluded.path, "
                "kind = excluded.kind, content_hash = excluded.content_hash, provenance = excluded.provenance",
                (key, str(path), kind, content_hash, _dumps(provenance), _now()),
            )

    def checkpoint(self, key: str) -> CheckpointRecord | None:
        row = self._conn.execute(
            "SELECT key, path, kind, content_hash, provenance, created_at FROM checkpoints WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        return CheckpointRecord(row[0], row[1], row[2], row[3], _loads(row[4]), row[5])

    # ---- evaluations -----------------------------------------------------------------------

    def record_eval(self, run: EvalRun, scores: Iterable[Score], items: Iterable[ItemRecord]) -> int:
        """Store one eval run with its scores and items and return its id.

        Replaces any earlier eval of the same checkpoint x suite x benchmark under the same label
        (experiment, method, seed) in the same transaction, so readers see the old run or the new
        one, never a mix. `items` may be a generator: large evals stream into the transaction
        without being held in memory.
        """
        return self.record_evals([(run, scores, items)])[0]

    def record_evals(self, runs: Iterable[tuple[EvalRun, Iterable[Score], Iterable[ItemRecord]]],
                     supersede: bool = False) -> list[int]:
        """record_eval for several runs (one suite's benchmarks) in one transaction: all or none.

        `supersede`: the label's runs on *other* checkpoints go too. The pipeline's labels are rows
        of an experiment, and a row means the checkpoint it last produced: after a config change
        the old checkpoint's runs would only shadow the new ones.
        """
        with write_transaction(self._conn) as conn:
            return [_insert_eval(conn, run, scores, items, supersede) for run, scores, items in runs]

    def copy_evals(self, eval_key: str, experiment: str | None, method: str | None,
                   seed: int | None) -> list[int]:
        """Give the eval runs recorded with meta `eval_key` a copy under another label (superseding
        that label's runs, as record_evals(supersede=True)); [] when there is nothing to copy.

        An eval's identity (checkpoint, suite, its options, backend) is `eval_key`; every label
        that names the same computation gets its own runs, scores and items, so each experiment's
        and each row's results read as if evaluated for it. The newest complete labelled group is
        copied: complete = it holds every benchmark its runs' meta lists under `eval_benchmarks`.
        """
        with write_transaction(self._conn) as conn:
            sources = conn.execute(
                "SELECT id, checkpoint, suite, benchmark, experiment, method, seed, meta FROM eval_runs "
                "WHERE json_extract(meta, '$.eval_key') = ? ORDER BY id DESC", (eval_key,)).fetchall()
            groups: dict[tuple[Any, ...], list[Any]] = {}
            for row in sources:  # newest label first
                groups.setdefault(tuple(row[4:7]), []).append(row)
            complete = [(label, rows) for label, rows in groups.items()
                        if {r[3] for r in rows} >= set(_loads(rows[0][7]).get("eval_benchmarks", []))]
            if not complete:
                return []
            label, group = complete[0]
            if label == (experiment, method, seed):
                return sorted(row[0] for row in group)
            copied = []
            for source_id, checkpoint, suite, benchmark, _, _, _, meta in sorted(group):
                run = EvalRun(checkpoint, suite, benchmark, experiment, method, seed,
                              {**_loads(meta), "copied_from_eval": source_id})
                new_id = _insert_eval(conn, run, (), (), supersede=True)
                conn.execute("INSERT INTO scores (eval_id, metric, value, stderr, n, meta) "
                             "SELECT ?, metric, value, stderr, n, meta FROM scores WHERE eval_id = ?",
                             (new_id, source_id))
                conn.execute("INSERT INTO items (eval_id, item_id, item_hash, prediction, target, score, extra) "
                             "SELECT ?, item_id, item_hash, prediction, target, score, extra FROM items "
                             "WHERE eval_id = ?", (new_id, source_id))
                copied.append(new_id)
            return copied

    def scores(
        self,
        *,
        experiment: str | None = None,
        checkpoint: str | None = None,
        method: str | None = None,
        seed: int | None = None,
        suite: str | None = None,
        benchmark: str | None = None,
        metric: str | None = None,
        eval_id: int | None = None,
    ) -> list[ScoreRow]:
        """Scores matching every filter given (None = any), ordered by eval run then metric."""
        filters = {
            "experiment": experiment,
            "checkpoint": checkpoint,
            "method": method,
            "seed": seed,
            "suite": suite,
            "benchmark": benchmark,
            "metric": metric,
            "eval_id": eval_id,
        }
        used = {name: value for name, value in filters.items() if value is not None}
        where = " AND ".join(f"{name} = ?" for name in used) or "1"
        rows = self._conn.execute(
            "SELECT eval_id, experiment, checkpoint, method, seed, suite, benchmark, metric, value, stderr, n, "
            f"meta, run_meta, created_at FROM score_view WHERE {where} ORDER BY eval_id, metric",
            tuple(used.values()),
        ).fetchall()
        return [ScoreRow(*row[:11], _loads(row[11]), _loads(row[12]), row[13]) for row in rows]

    def items(
        self,
        eval_id: int | None = None,
        *,
        checkpoint: str | None = None,
        benchmark: str | None = None,
        suite: str | None = None,
    ) -> list[ItemRecord]:
        """Item records of one eval run, by id or by checkpoint + benchmark (+ suite), ordered by item id."""
        if eval_id is None:
            if checkpoint is None or benchmark is None:
                raise ValueError("items() needs eval_id, or checkpoint and benchmark")
            with read_transaction(self._conn):
                runs = self._conn.execute(
                    "SELECT id, suite FROM eval_runs WHERE checkpoint = ? AND benchmark = ? "
                    "AND (? IS NULL OR suite = ?) ORDER BY id",
                    (checkpoint, benchmark, suite, suite),
                ).fetchall()
                if len({s for _, s in runs}) > 1:
                    raise ValueError(
                        f"{checkpoint!r} was evaluated on {benchmark!r} in several suites; pass suite="
                    )
                # several labels of one checkpoint hold the same evaluation: the first will do
                return self.items(runs[0][0]) if runs else []
        rows = self._conn.execute(
            "SELECT item_id, item_hash, prediction, target, score, extra FROM items WHERE eval_id = ? "
            "ORDER BY item_id",
            (eval_id,),
        ).fetchall()
        return [ItemRecord(*row[:5], _loads(row[5])) for row in rows]

    # ---- training curves -------------------------------------------------------------------

    def add_curve_points(self, run_key: str, points: Iterable[CurvePoint]) -> None:
        """Add loss points; a step logged again (a resumed run) replaces the earlier value."""
        rows = []
        for p in points:
            if p.split not in SPLITS:
                raise ValueError(f"curve split must be one of {SPLITS}, got {p.split!r}")
            rows.append((run_key, p.split, p.step, p.loss, p.tokens))
        with write_transaction(self._conn) as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO curves (run_key, split, step, loss, tokens) VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    def curve(self, run_key: str, split: str | None = None) -> list[CurvePoint]:
        """The run's points ordered by split then step."""
        rows = self._conn.execute(
            "SELECT step, split, loss, tokens FROM curves WHERE run_key = ? AND (? IS NULL OR split = ?) "
            "ORDER BY split, step",
            (run_key, split, split),
        ).fetchall()
        return [CurvePoint(*row) for row in rows]

    # ---- job states ------------------------------------------------------------------------

    def set_job_state(self, key: str, kind: str, state: str, error: str | None = None) -> None:
        """Record a job's state; the error is replaced too, so a retried job does not keep an old failure."""
        if state not in JOB_STATES:
            raise ValueError(f"job state must be one of {JOB_STATES}, got {state!r}")
        now = _now()
        with write_transaction(self._conn) as conn:
            conn.execute(
                "INSERT INTO jobs (key, kind, state, error, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, state = excluded.state, "
                "error = excluded.error, updated_at = excluded.updated_at",
                (key, kind, state, error, now, now),
            )

    def job_states(self, kind: str | None = None) -> dict[str, JobState]:
        """Every job's state by key (only jobs of `kind` if given)."""
        rows = self._conn.execute(
            "SELECT key, kind, state, error, created_at, updated_at FROM jobs WHERE (? IS NULL OR kind = ?) "
            "ORDER BY key",
            (kind, kind),
        ).fetchall()
        return {row[0]: JobState(*row) for row in rows}

    # ---- export ----------------------------------------------------------------------------

    def to_dataframe(self, table: str) -> pd.DataFrame:
        """A table or view (see `harness.store.export.EXPORTED`) as a pandas DataFrame; JSON stays text."""
        return export.to_dataframe(self._conn, table)

    def export_csv(self, directory: Path | str) -> list[Path]:
        """Write `<name>.csv` for every table and view from one snapshot; each file is replaced atomically."""
        return export.export_csv(self._conn, Path(directory))


def _score_row(eval_id: int, run: EvalRun, score: Score) -> tuple[Any, ...]:
    # SQLite would store NaN as NULL and then fail NOT NULL with a message naming no metric.
    if math.isnan(score.value):
        raise ValueError(f"score {score.metric!r} of {run.checkpoint!r} on {run.benchmark!r} is NaN")
    return (eval_id, score.metric, score.value, score.stderr, score.n, _dumps(score.meta))


def _insert_eval(conn: sqlite3.Connection, run: EvalRun, scores: Iterable[Score], items: Iterable[ItemRecord],
                 supersede: bool = False) -> int:
    # The old run's scores and items go with it (ON DELETE CASCADE). `IS`: NULL-safe equality.
    conn.execute(
        "DELETE FROM eval_runs WHERE (checkpoint = ? OR ?) AND suite = ? AND benchmark = ? AND experiment IS ? "
        "AND method IS ? AND seed IS ?",
        (run.checkpoint, supersede, run.suite, run.benchmark, run.experiment, run.method, run.seed),
    )
    try:
        cursor = conn.execute(
            "INSERT INTO eval_runs (checkpoint, suite, benchmark, experiment, method, seed, meta, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (run.checkpoint, run.suite, run.benchmark, run.experiment, run.method, run.seed, _dumps(run.meta),
             _now()),
        )
    except sqlite3.IntegrityError as exc:
        raise ValueError(
            f"eval of {run.checkpoint!r} names an unknown checkpoint or experiment "
            "(add_checkpoint / add_experiment first)"
        ) from exc
    eval_id = int(cursor.lastrowid or 0)
    conn.executemany(
        "INSERT INTO scores (eval_id, metric, value, stderr, n, meta) VALUES (?, ?, ?, ?, ?, ?)",
        (_score_row(eval_id, run, s) for s in scores),
    )
    conn.executemany(
        "INSERT INTO items (eval_id, item_id, item_hash, prediction, target, score, extra) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        ((eval_id, i.item_id, i.item_hash, i.prediction, i.target, i.score, _dumps(i.extra)) for i in items),
    )
    return eval_id
