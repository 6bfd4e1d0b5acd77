"""The results store's schema: versions recorded, old stores migrated in order (and refused by older
code), failing migrations leave the old version whole, foreign files refused with their name; export."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import pytest
from store_fixtures import item_records, raw_rows

from harness.errors import UserError
from harness.store import SCHEMA_VERSION, EvalRun, ResultsStore, Score
from harness.store.connection import connect
from harness.store.export import EXPORTED
from harness.store.schema import MIGRATIONS, ensure_schema


def test_a_fresh_store_records_the_current_schema_version(tmp_path: Path) -> None:
    with ResultsStore.open(tmp_path):
        pass
    db = tmp_path / "results.sqlite"
    assert raw_rows(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    assert raw_rows(db, "PRAGMA journal_mode") == [("wal",)]


def _add_judge_column(conn: sqlite3.Connection) -> None:
    """A synthetic next migration: the current database is the 'old' one that lacks this column."""
    conn.execute("ALTER TABLE scores ADD COLUMN judge TEXT NOT NULL DEFAULT 'none'")


def test_an_old_database_is_migrated_in_order_and_then_refused_by_older_code(store: ResultsStore) -> None:
    store.record_eval(EvalRun("ckpt-a", "knowledge", "mmlu"), [Score("acc", 0.4)], item_records(2))
    db = store.path
    store.close()
    conn = connect(db)
    try:
        assert ensure_schema(conn, db, (*MIGRATIONS, _add_judge_column)) == SCHEMA_VERSION
        assert ensure_schema(conn, db, (*MIGRATIONS, _add_judge_column)) == SCHEMA_VERSION + 1  # no-op now
    finally:
        conn.close()
    assert raw_rows(db, "SELECT metric, value, judge FROM scores") == [("acc", 0.4, "none")]
    assert raw_rows(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION + 1),)]
    # This code knows only SCHEMA_VERSION, so the migrated file is now "newer" to it.
    with pytest.raises(UserError, match="upgrade atax") as caught:
        ResultsStore(db)
    assert str(db) in str(caught.value) and "\n" not in str(caught.value)


def test_v2_stores_gain_labelled_eval_runs_and_keep_every_row(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    conn = connect(db)
    try:
        ensure_schema(conn, db, MIGRATIONS[:2])  # a store written by the previous release
        conn.execute("INSERT INTO checkpoints VALUES ('c', '/c', 'lora', 'h', '{}', 'now')")
        for n, bench in enumerate(["mmlu", "arc", "gsm8k"], 1):
            conn.execute("INSERT INTO eval_runs (checkpoint, suite, benchmark, meta, created_at) "
                         "VALUES ('c', 'knowledge', ?, '{}', 'now')", (bench,))
            conn.execute("INSERT INTO scores (eval_id, metric, value) VALUES (?, 'acc', ?)", (n, n / 10))
            conn.execute("INSERT INTO items (eval_id, item_id, item_hash) VALUES (?, 'q', 'h')", (n,))
        conn.execute("DELETE FROM eval_runs WHERE id = 3")  # id 3 must never come back
    finally:
        conn.close()
    with ResultsStore(db) as store:
        assert [(r.eval_id, r.benchmark, r.value) for r in store.scores()] == [(1, "mmlu", 0.1), (2, "arc", 0.2)]
        assert len(store.items(1)) == 1
        new = store.record_eval(EvalRun("c", "knowledge", "mmlu", method="vanilla"), [Score("acc", 0.3)], [])
        assert new == 4 and len(store.scores(benchmark="mmlu")) == 2  # a second label beside the old run
        store.record_eval(EvalRun("c", "knowledge", "arc"), [Score("acc", 0.5)], [])  # same (empty) label
        assert [r.value for r in store.scores(benchmark="arc")] == [0.5]
    assert raw_rows(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    assert raw_rows(db, "PRAGMA foreign_key_check") == [] and raw_rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert raw_rows(db, "SELECT count(*) FROM items") == [(1,)]  # the replaced arc run's item went with it


def test_a_failing_migration_leaves_the_old_version_whole(store: ResultsStore) -> None:
    db = store.path
    store.close()

    def add_column_then_fail(conn: sqlite3.Connection) -> None:
        _add_judge_column(conn)
        raise RuntimeError("migration bug")

    conn = connect(db)
    try:
        with pytest.raises(RuntimeError, match="migration bug"):
            ensure_schema(conn, db, (*MIGRATIONS, add_column_then_fail))
    finally:
        conn.close()
    assert "judge" not in [row[1] for row in raw_rows(db, "PRAGMA table_info(scores)")]
    with ResultsStore(db) as reopened:
        assert reopened.checkpoint("ckpt-a") is not None


def test_a_newer_schema_version_is_refused_with_the_file_name(tmp_path: Path) -> None:
    with ResultsStore.open(tmp_path) as store:
        db = store.path
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 5),))
    conn.commit()
    conn.close()
    with pytest.raises(UserError, match=f"version {SCHEMA_VERSION + 5}.*upgrade atax") as caught:
        ResultsStore.open(tmp_path)
    assert str(db) in str(caught.value)


def test_a_file_that_is_not_a_results_database_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "results.sqlite"
    text.write_text("method,score\nvanilla,0.5\n" * 50)
    with pytest.raises(UserError, match="not a SQLite database") as caught:
        ResultsStore(text)
    assert str(text) in str(caught.value)
    assert text.read_text().startswith("method,score")  # left as it was

    foreign = tmp_path / "other.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE runs (id INTEGER)")
    conn.close()
    with pytest.raises(UserError, match="not an atax results store") as caught:
        ResultsStore(foreign)
    assert str(foreign) in str(caught.value)


# ---- export -------------------------------------------------------------------------------


def test_dataframes_and_csv_export(store: ResultsStore, tmp_path: Path) -> None:
    eval_id = store.record_eval(
        EvalRun("ckpt-a", "knowledge", "arc", method="dtm", seed=1, meta={"backend": "hf"}),
        [Score("acc", 0.5, 0.01, 100), Score("acc_norm", 0.55)],
        item_records(3),
    )
    store.set_job_state("eval-1", "eval", "done")

    scores = store.to_dataframe("scores")
    assert list(scores.columns) == ["eval_id", "metric", "value", "stderr", "n", "meta"]
    assert scores["metric"].tolist() == ["acc", "acc_norm"]
    frame = store.to_dataframe("score_view")
    assert list(frame.columns) == [
        "eval_id",
        "experiment",
        "checkpoint",
        "method",
        "seed",
        "suite",
        "benchmark",
        "metric",
        "value",
        "stderr",
        "n",
        "meta",
        "run_meta",
        "created_at",
    ]
    assert frame[["checkpoint", "benchmark", "metric", "value"]].values.tolist() == [
        ["ckpt-a", "arc", "acc", 0.5],
        ["ckpt-a", "arc", "acc_norm", 0.55],
    ]
    assert frame["run_meta"].tolist() == ['{"backend": "hf"}'] * 2
    curves = store.to_dataframe("curves")
    assert list(curves.columns) == ["run_key", "split", "step", "loss", "tokens"] and len(curves) == 0
    with pytest.raises(UserError, match="unknown results table"):
        store.to_dataframe("scores; DROP TABLE scores")

    out = tmp_path / "csv"
    (out).mkdir()
    (out / "items.csv").write_text("stale\n")
    written = store.export_csv(out)
    assert sorted(p.name for p in written) == sorted(f"{name}.csv" for name in EXPORTED)
    # Nothing else in the directory: no temporary files left behind, the stale file replaced.
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)
    assert (out / "items.csv").read_text().startswith("eval_id,item_id,item_hash,")
    with (out / "item_view.csv").open(newline="") as handle:
        item_rows = list(csv.DictReader(handle))
    assert [(r["eval_id"], r["checkpoint"], r["benchmark"], r["item_id"]) for r in item_rows] == [
        (str(eval_id), "ckpt-a", "arc", f"{k:05d}") for k in range(3)
    ]
    with (out / "jobs.csv").open(newline="") as handle:
        assert [(r["key"], r["state"]) for r in csv.DictReader(handle)] == [("eval-1", "done")]
