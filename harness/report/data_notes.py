"""What a table says about the data behind its numbers: cells scored on less than the official
release are marked (†) with a footnote naming the copy (`complete` / `partial (n of N)` is stored
with every eval run's scores, `run_meta["data"]["completeness"]`), a suite's caveat for a column
is printed with the metric it names beside the primary (GSM8K: strict-match, flexible-extract),
and judged benchmarks say how their judges' ratings were read (`run_meta["rating"]`: the final
verdict, or FastChat's parsing).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.report.table import PARTIAL_MARK, Table


def data_notes(store: Any, table: Table) -> list[str]:
    """Every note of this module for `table` (its cells already carry `partial`)."""
    return partial_notes(table) + beside_notes(store, table) + rating_notes(table)


def rating_notes(table: Table) -> list[str]:
    """'MT-bench: ratings read as fastchat (FastChat's show_result parsing) for dtm' per judged column."""
    notes = []
    for column in table.columns:
        modes: dict[str, list[str]] = {}
        for row in table.rows:
            for run in (row.provenance.get("runs") or {}).get(column.key) or []:
                mode = (getattr(run, "run_meta", None) or {}).get("rating")
                if mode and row.name not in modes.setdefault(mode, []):
                    modes[mode].append(row.name)
        if modes:
            said = "; ".join(f"{_RATING_WORDS.get(mode, mode)} for {', '.join(rows)}" for mode, rows in modes.items())
            notes.append(f"{column.label}: ratings read as {said}.")
    return notes


_RATING_WORDS = {"final": "the judge's final verdict", "fastchat": "FastChat's show_result parsing (rating=fastchat)"}


def partial_text(runs: Iterable[Any]) -> str | None:
    """The first non-complete data record of these eval runs (RunRef-like: `run_meta`), or None."""
    for run in runs:
        record = ((getattr(run, "run_meta", None) or {}).get("data") or {}).get("completeness") or {}
        if record.get("status") not in (None, "complete"):
            return str(record.get("text") or record["status"])
    return None


def partial_notes(table: Table) -> list[str]:
    """One footnote per column and kind of copy, naming the rows whose cells are marked."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for column in table.columns:
        for row in table.rows:
            cell = row.cell(column.key)
            if cell.partial:
                grouped.setdefault((column.label, cell.partial), []).append(row.name)
    return [f"{PARTIAL_MARK} {label} not on the complete benchmark, {text}: {', '.join(rows)}"
            for (label, text), rows in grouped.items()]


def beside_notes(store: Any, table: Table) -> list[str]:
    """A suite's caveat for a column (`run_meta["table_note"]`: text, and a stored metric to show beside
    the primary, e.g. GSM8K's flexible-extract under its strict-match), with that metric per row."""
    notes = []
    for column in table.columns:
        runs_of = {row.name: (row.provenance.get("runs") or {}).get(column.key) or [] for row in table.rows}
        note = next((run.run_meta["table_note"] for runs in runs_of.values() for run in runs
                     if isinstance((getattr(run, "run_meta", None) or {}).get("table_note"), dict)), None)
        if note is None:
            continue
        shown = []
        for name, runs in runs_of.items():
            values = [s.value for run in runs for s in store.scores(eval_id=run.eval_id, metric=note["metric"])]
            if values:
                shown.append(f"{name} {sum(values) / len(values) * (column.scale or 1.0):.{column.decimals}f}")
        beside = f"; {note.get('label', note['metric'])}: {', '.join(shown)}" if shown else ""
        notes.append(f"{column.label}: {note['text']}{beside}.")
    return notes
