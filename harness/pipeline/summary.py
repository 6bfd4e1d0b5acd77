"""A plain comparison table from the store: one row per method (mean over seeds), one column per
benchmark's primary metric; base model first."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from harness.store import ResultsStore


def summary_table(results_dir: Path, experiment: str | None = None) -> str:
    with ResultsStore.open(results_dir) as store:
        rows = store.scores(experiment=experiment) if experiment else store.scores()
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    columns: list[str] = []
    for row in rows:
        primary = row.run_meta.get("primary")
        if primary is not None and row.metric != primary:
            continue
        column = row.benchmark
        if column not in columns:
            columns.append(column)
        values[row.method or row.checkpoint][column].append(row.value)
    names = sorted(values, key=lambda n: (n != "base", n))
    lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name in names:
        cells = [f"{sum(v) / len(v):.4f}" if (v := values[name].get(c)) else "–" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
