"""The results store: round trips, replacement, transactions under concurrency and SIGKILL, schema versions, export.

The concurrency and crash tests run real child processes: this file doubles as their entry point
(`python tests/test_store.py writer|stall ...`, see the bottom).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_fixtures import item_records, raw_rows

from harness.store import (
    CurvePoint,
    EvalRun,
    ItemRecord,
    ResultsStore,
    Score,
)

REPO = Path(__file__).resolve().parents[1]

WRITER_TXNS = 120
WRITER_ITEMS = 40
WRITER_BENCHMARKS = 5  # each writer cycles over these, so most of its writes replace an earlier eval


def _spawn(*args: object) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.Popen(
        [sys.executable, __file__, *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# ---- round trips --------------------------------------------------------------------------


def test_scores_and_items_round_trip_with_every_field(store: ResultsStore) -> None:
    exp_id = store.add_experiment("baselines", '{"seeds": [1]}')
    assert store.add_experiment("baselines", '{"seeds": [1, 2]}') == exp_id  # re-run keeps its id
    run = EvalRun(
        "ckpt-a",
        "knowledge",
        "gsm8k",
        experiment="baselines",
        method="dtm",
        seed=7,
        meta={"backend": "vllm", "lm_eval": "0.4.13", "batch_size": 16, "task_version": {"gsm8k": 3}},
    )
    scores = [
        Score("exact_match,strict-match", 0.3125, 0.0128, 1319, {"filter": "strict-match"}),
        Score("exact_match,flexible-extract", 0.35),
    ]
    items = [
        ItemRecord("0001", "h1", "La réponse est 42 ✓", "42", 1.0, {"tokens": 17, "tags": ["a", "b"]}),
        ItemRecord("0002", "h2", None, None, None),
    ]
    eval_id = store.record_eval(run, scores, items)

    rows = store.scores(checkpoint="ckpt-a")
    assert [(r.metric, r.value, r.stderr, r.n, r.meta) for r in rows] == [
        ("exact_match,flexible-extract", 0.35, None, None, {}),
        ("exact_match,strict-match", 0.3125, 0.0128, 1319, {"filter": "strict-match"}),
    ]
    for row in rows:
        assert (
            row.eval_id,
            row.experiment,
            row.checkpoint,
            row.method,
            row.seed,
            row.suite,
            row.benchmark,
        ) == (eval_id, "baselines", "ckpt-a", "dtm", 7, "knowledge", "gsm8k")
        assert row.run_meta == run.meta
    assert store.items(eval_id) == items
    assert store.items(checkpoint="ckpt-a", benchmark="gsm8k") == items
    assert store.scores(method="dtm", seed=7, metric="exact_match,flexible-extract")[0].value == 0.35
    assert store.scores(method="vanilla") == []
    assert store.to_dataframe("experiments")["config_json"].tolist() == ['{"seeds": [1, 2]}']

    ckpt = store.checkpoint("ckpt-a")
    assert ckpt is not None
    assert (ckpt.kind, ckpt.content_hash, ckpt.provenance) == (
        "lora",
        "sha-a",
        {"method": "dtm", "runs": ["r1", "r2"]},
    )
    store.add_checkpoint("ckpt-a", "/moved", "lora", "sha-a2", {"method": "dtm"})  # upsert by key
    ckpt = store.checkpoint("ckpt-a")
    assert ckpt is not None and (ckpt.path, ckpt.content_hash) == ("/moved", "sha-a2")
    assert store.checkpoint("missing") is None


def test_curves_round_trip_and_a_relogged_step_replaces(store: ResultsStore) -> None:
    store.add_curve_points(
        "run-1",
        [
            CurvePoint(10, "train", 2.5, 1000),
            CurvePoint(20, "train", 2.0, 2000),
            CurvePoint(20, "validation", 2.2),
        ],
    )
    store.add_curve_points("run-1", [CurvePoint(20, "train", 1.9, 2001)])  # resumed run logs step 20 again
    store.add_curve_points("run-2", [CurvePoint(5, "train", 9.0)])
    assert store.curve("run-1") == [
        CurvePoint(10, "train", 2.5, 1000),
        CurvePoint(20, "train", 1.9, 2001),
        CurvePoint(20, "validation", 2.2, None),
    ]
    assert store.curve("run-1", split="validation") == [CurvePoint(20, "validation", 2.2, None)]
    with pytest.raises(ValueError, match="split"):
        store.add_curve_points("run-1", [CurvePoint(30, "test", 1.0)])  # type: ignore[arg-type]
    assert len(store.curve("run-1")) == 3


def test_job_states_upsert_and_clear_old_errors(store: ResultsStore) -> None:
    store.set_job_state("train-1", "train", "running")
    store.set_job_state("eval-1", "eval", "pending")
    store.set_job_state("train-1", "train", "failed", error="CUDA out of memory")
    assert store.job_states()["train-1"].error == "CUDA out of memory"
    first = store.job_states()["train-1"]
    store.set_job_state("train-1", "train", "done")
    done = store.job_states()["train-1"]
    assert (done.state, done.error, done.created_at) == ("done", None, first.created_at)
    assert done.updated_at >= first.updated_at
    assert list(store.job_states(kind="eval")) == ["eval-1"]
    with pytest.raises(ValueError, match="job state"):
        store.set_job_state("eval-1", "eval", "finished")


# ---- replacement and rollback -------------------------------------------------------------


def test_re_recording_an_eval_replaces_it(store: ResultsStore, tmp_path: Path) -> None:
    run = EvalRun("ckpt-a", "knowledge", "mmlu")
    first = store.record_eval(run, [Score("acc", 0.4)], item_records(5, "old"))
    other = store.record_eval(EvalRun("ckpt-a", "knowledge", "arc"), [Score("acc", 0.6)], item_records(2))
    second = store.record_eval(run, [Score("acc", 0.5)], item_records(3, "new"))

    assert second != first
    assert [(r.eval_id, r.value) for r in store.scores(benchmark="mmlu")] == [(second, 0.5)]
    assert store.items(first) == []
    assert store.items(second) == item_records(3, "new")
    assert len(store.items(other)) == 2  # other benchmarks of the checkpoint are untouched
    db = store.path
    assert raw_rows(db, "SELECT count(*) FROM eval_runs") == [(2,)]
    assert raw_rows(db, "SELECT count(*) FROM items") == [(5,)]


def test_labels_of_one_checkpoint_keep_their_own_runs(store: ResultsStore) -> None:
    store.add_experiment("one", "{}")
    store.add_experiment("two", "{}")
    a = store.record_eval(EvalRun("ckpt-a", "knowledge", "mmlu", "one", "vanilla", 0), [Score("acc", 0.4)], item_records(2))
    b = store.record_eval(EvalRun("ckpt-a", "knowledge", "mmlu", "two", "vanilla", 0), [Score("acc", 0.5)], item_records(2))
    c = store.record_eval(EvalRun("ckpt-a", "knowledge", "mmlu", "one", "vanilla", None), [Score("acc", 0.6)], [])
    again = store.record_eval(EvalRun("ckpt-a", "knowledge", "mmlu", "one", "vanilla", 0), [Score("acc", 0.7)], [])
    assert {(r.eval_id, r.experiment, r.seed, r.value) for r in store.scores()} == {
        (b, "two", 0, 0.5), (c, "one", None, 0.6), (again, "one", 0, 0.7)}  # only a's own label was replaced
    assert a not in {b, c, again}
    assert store.items(checkpoint="ckpt-a", benchmark="mmlu") == item_records(2)  # labels share one evaluation


def test_a_superseding_record_replaces_the_labels_runs_on_other_checkpoints(store: ResultsStore,
                                                                            tmp_path: Path) -> None:
    store.add_experiment("one", "{}")
    store.add_checkpoint("ckpt-b", tmp_path / "b", "lora", "sha-b", {})
    old = EvalRun("ckpt-a", "knowledge", "mmlu", "one", "vanilla", 0)
    other_row = EvalRun("ckpt-a", "knowledge", "mmlu", "one", "l2", 0)
    store.record_evals([(old, [Score("acc", 0.4)], []), (other_row, [Score("acc", 0.3)], [])])
    store.record_eval(EvalRun("ckpt-b", "knowledge", "mmlu", "one", "vanilla", 0), [Score("acc", 0.1)], [])
    assert len(store.scores(method="vanilla")) == 2  # a plain record keeps both checkpoints' runs
    (new,) = store.record_evals([(EvalRun("ckpt-b", "knowledge", "mmlu", "one", "vanilla", 0),
                                  [Score("acc", 0.5)], [])], supersede=True)
    assert [(r.eval_id, r.checkpoint, r.value) for r in store.scores(method="vanilla")] == [(new, "ckpt-b", 0.5)]
    assert [r.value for r in store.scores(method="l2")] == [0.3]  # other labels are untouched


def _pipeline_evals(store: ResultsStore, label: tuple, key: str, benchmarks: list[str]) -> list[int]:
    runs = [(EvalRun("ckpt-a", "knowledge", b, *label, {"eval_key": key, "eval_benchmarks": benchmarks}),
             [Score("acc", 0.1 * (i + 1), stderr=0.01, n=3)], item_records(3, b)) for i, b in enumerate(benchmarks)]
    return store.record_evals(runs)


def test_copy_evals_gives_a_finished_evaluation_to_another_label(store: ResultsStore) -> None:
    store.add_experiment("one", "{}")
    store.add_experiment("two", "{}")
    assert store.copy_evals("key-1", "two", "vanilla", 0) == []  # nothing to copy: evaluate
    sources = _pipeline_evals(store, ("one", "vanilla", 0), "key-1", ["mmlu", "arc"])
    assert store.copy_evals("key-1", "one", "vanilla", 0) == sources  # its own label: nothing to do
    copies = store.copy_evals("key-1", "two", "base", None)
    assert len(copies) == 2 and not set(copies) & set(sources)
    for source, copy in zip(sources, copies, strict=True):
        (orig,), (dup,) = store.scores(eval_id=source), store.scores(eval_id=copy)
        assert (dup.experiment, dup.method, dup.seed) == ("two", "base", None)
        assert (dup.benchmark, dup.metric, dup.value, dup.stderr, dup.n) == (
            orig.benchmark, orig.metric, orig.value, orig.stderr, orig.n)
        assert dup.run_meta == {**orig.run_meta, "copied_from_eval": source}
        assert store.items(copy) == store.items(source) and len(store.items(copy)) == 3
    assert store.copy_evals("key-1", "two", "base", None) == copies  # the copies are that label's own now
    assert len(store.scores(experiment="two")) == 2


def test_an_incomplete_evaluation_is_not_copied(store: ResultsStore) -> None:
    store.add_experiment("one", "{}")
    (mmlu, _) = _pipeline_evals(store, ("one", "vanilla", 0), "key-2", ["mmlu", "arc"])
    store.record_eval(EvalRun("ckpt-a", "knowledge", "arc", "one", "vanilla", 0), [Score("acc", 0.9)], [])
    assert store.copy_evals("key-2", None, "other", None) == []  # arc was re-run outside the pipeline
    assert [r.eval_id for r in store.scores(benchmark="mmlu")] == [mmlu]


def test_a_failing_write_rolls_back_and_keeps_the_previous_eval(store: ResultsStore) -> None:
    run = EvalRun("ckpt-a", "knowledge", "mmlu")
    kept = store.record_eval(run, [Score("acc", 0.4)], item_records(4))
    duplicate_ids = item_records(3) + item_records(1)
    with pytest.raises(sqlite3.IntegrityError):
        store.record_eval(run, [Score("acc", 0.9)], duplicate_ids)
    with pytest.raises(ValueError, match="NaN"):
        store.record_eval(run, [Score("acc", float("nan"))], item_records(2))
    with pytest.raises(ValueError, match="unknown checkpoint"):
        store.record_eval(EvalRun("never-added", "knowledge", "mmlu"), [Score("acc", 0.1)], item_records(2))
    assert [(r.eval_id, r.value) for r in store.scores()] == [(kept, 0.4)]
    assert len(store.items(kept)) == 4
    assert raw_rows(store.path, "SELECT count(*) FROM items") == [(4,)]


# ---- concurrency and crashes --------------------------------------------------------------


def test_readers_see_only_whole_transactions_while_two_writers_write(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite"
    writers = [_spawn("writer", db, f"ckpt-{w}", WRITER_TXNS, WRITER_ITEMS) for w in range(2)]
    seen_progress = set()
    reads = 0
    with ResultsStore(db) as store:
        while any(p.poll() is None for p in writers):
            with store.snapshot():
                rows = store.scores()
                eval_ids = {r.eval_id for r in rows}
                for eval_id in eval_ids:
                    assert sorted(r.metric for r in rows if r.eval_id == eval_id) == ["acc", "n_items"]
                    assert len(store.items(eval_id)) == WRITER_ITEMS
                keys = [(r.checkpoint, r.benchmark) for r in rows if r.metric == "acc"]
                assert len(keys) == len(set(keys)), (
                    "a replaced eval and its replacement were visible together"
                )
            seen_progress.add(max(eval_ids, default=0))
            reads += 1
    for proc in writers:
        _, err = proc.communicate()
        assert proc.returncode == 0, err
        assert "locked" not in err
    # The reads really overlapped the writes: they saw several intermediate states.
    assert len(seen_progress - {0}) >= 3, (reads, seen_progress)
    with ResultsStore(db) as store:
        final = {(r.checkpoint, r.benchmark): r.value for r in store.scores(metric="acc")}
    last = {
        b: max(i for i in range(WRITER_TXNS) if i % WRITER_BENCHMARKS == b) for b in range(WRITER_BENCHMARKS)
    }
    assert final == {
        (f"ckpt-{w}", f"b{b}"): float(last[b]) for w in range(2) for b in range(WRITER_BENCHMARKS)
    }
    assert raw_rows(db, "SELECT count(*) FROM items") == [(2 * WRITER_BENCHMARKS * WRITER_ITEMS,)]


def test_a_writer_killed_mid_transaction_leaves_no_partial_rows(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite"
    run = EvalRun("ckpt", "knowledge", "mmlu")
    with ResultsStore(db) as store:
        store.add_checkpoint("ckpt", tmp_path, "dense", "sha", {})
        old_id = store.record_eval(run, [Score("acc", 0.25)], item_records(3, "old"))

    inside = tmp_path / "inside-transaction"
    proc = _spawn("stall", db, inside, 3000)
    try:
        deadline = time.monotonic() + 30
        while not inside.exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the stalling writer never got inside its transaction"
            time.sleep(0.02)

        # While the writer sits inside its transaction (having deleted the old eval and written
        # thousands of new items), a reader still sees exactly the old committed state.
        with ResultsStore(db) as store:
            assert [(r.eval_id, r.value) for r in store.scores()] == [(old_id, 0.25)]
            assert store.items(old_id) == item_records(3, "old")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    with ResultsStore(db) as store:
        assert [(r.eval_id, r.value) for r in store.scores()] == [(old_id, 0.25)]
        assert store.items(old_id) == item_records(3, "old")
        assert raw_rows(db, "SELECT count(*) FROM items") == [(3,)]
        assert raw_rows(db, "SELECT count(*) FROM eval_runs") == [(1,)]
        assert raw_rows(db, "PRAGMA integrity_check") == [("ok",)]
        # The dead writer's lock went with it: the next write goes through at once.
        new_id = store.record_eval(run, [Score("acc", 0.5)], item_records(2, "new"))
        assert store.items(new_id) == item_records(2, "new")


# ---- child processes ----------------------------------------------------------------------


def _writer(db: str, checkpoint: str, txns: int, n_items: int) -> None:
    """Many small record_eval transactions, cycling over a few benchmarks so most replace."""
    with ResultsStore(db) as store:
        store.add_checkpoint(checkpoint, "/nowhere", "lora", f"sha-{checkpoint}", {})
        for i in range(txns):
            run = EvalRun(checkpoint, "knowledge", f"b{i % WRITER_BENCHMARKS}")
            store.record_eval(
                run, [Score("acc", float(i)), Score("n_items", n_items)], item_records(n_items, str(i))
            )
            time.sleep(0.001)  # let the other writer and the reader in between transactions


def _stall(db: str, signal_file: str, n_items: int) -> None:
    """Start replacing the mmlu eval, write `n_items` big items, say so, then hang until killed."""

    def items() -> Iterator[ItemRecord]:
        # ~1 KB each, so the uncommitted rows overflow SQLite's page cache into the WAL file.
        yield from item_records(n_items, "partial", size=1000)
        Path(signal_file).write_text("inside")
        time.sleep(120)

    with ResultsStore(db) as store:
        store.record_eval(EvalRun("ckpt", "knowledge", "mmlu"), [Score("acc", 0.99)], items())


if __name__ == "__main__":
    role, *rest = sys.argv[1:]
    if role == "writer":
        _writer(rest[0], rest[1], int(rest[2]), int(rest[3]))
    elif role == "stall":
        _stall(rest[0], rest[1], int(rest[2]))
    else:
        raise SystemExit(f"unknown child role {role!r}")
