"""Tables mark cells scored on less than the official release (†, with a footnote naming the copy)
and print GSM8K's strict-match caveat with flexible-extract beside it."""

from __future__ import annotations

from pathlib import Path

from harness.report.from_store import build_tables
from harness.report.render import render
from harness.store import EvalRun, ItemRecord, ResultsStore, Score


def _record(store: ResultsStore, method: str, completeness: dict, strict: float, flexible: float) -> None:
    store.add_checkpoint(method, method, "model", f"hash-{method}", {})
    from suites.knowledge.benchmarks import BENCHMARKS

    meta = {"primary_metric": "exact_match,strict-match", "data": {"completeness": completeness},
            "table_note": BENCHMARKS["gsm8k"].table_note}  # as the knowledge suite stores it
    scores = [Score("exact_match,strict-match", strict, None, 2), Score("exact_match,flexible-extract", flexible, None, 2)]
    items = [ItemRecord(f"{i}", f"h{i}", "p", "t", float(i < strict * 2)) for i in range(2)]
    store.record_evals([(EvalRun(method, "knowledge", "gsm8k", "exp", method, 0, meta), scores, items)])


def test_partial_cells_are_marked_and_gsm8k_notes_flexible_extract(tmp_path: Path) -> None:
    with ResultsStore.open(tmp_path) as store:
        store.add_experiment("exp", "{}")
        _record(store, "vanilla", {"status": "complete", "text": "complete (1319 questions)"}, 0.5, 1.0)
        _record(store, "dtm", {"status": "partial", "text": "partial (50 of 1319 questions)"}, 1.0, 1.0)
        table = build_tables(store)[0]
        markdown = render(table, "md")
    lines = markdown.splitlines()
    assert next(line for line in lines if line.startswith("| dtm ")).count("†") == 1
    assert "†" not in next(line for line in lines if line.startswith("| vanilla "))
    assert "† GSM8K not on the complete benchmark, partial (50 of 1319 questions): dtm" in lines
    note = next(line for line in lines if line.startswith("GSM8K: strict-match, lm-eval's primary, only accepts"))
    assert note.endswith("scores 0); flexible-extract (the last number): vanilla 100.00, dtm 100.00.")
    assert "partial" in render(table, "csv").splitlines()[2]


def test_judged_columns_say_how_ratings_were_read(tmp_path: Path) -> None:
    with ResultsStore.open(tmp_path) as store:
        store.add_experiment("exp", "{}")
        for method, mode in (("vanilla", "final"), ("dtm", "fastchat")):
            store.add_checkpoint(method, method, "model", f"hash-{method}", {})
            meta = {"primary_metric": "score", "rating": mode,
                    "data": {"completeness": {"status": "complete", "text": "complete (80 questions)"}}}
            store.record_evals([(EvalRun(method, "mt_bench", "mt_bench", "exp", method, 0, meta),
                                 [Score("score", 7.0, None, 1)], [ItemRecord("81/turn1", "h", "a", None, 7.0)])])
        markdown = render(build_tables(store)[0], "md")
    assert "MT-bench: ratings read as the judge's final verdict for vanilla; FastChat's show_result parsing " \
           "(rating=fastchat) for dtm." in markdown.splitlines()
    assert "†" not in markdown
