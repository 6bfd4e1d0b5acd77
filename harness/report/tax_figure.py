"""The alignment-tax figure of one experiment: each method's knowledge score minus the base model's,
per benchmark and over their mean, with paired 95% bootstrap intervals on the shared items.

A bar left of zero is a tax (the method lost knowledge the base had); an interval that crosses zero
is a difference these items cannot tell from noise. The paired interval is the honest one here: it
is much narrower than the two rows' own intervals, since both rows answer the same items.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from harness.report.figures import BarPoint, new_figure, save
from harness.report.from_store import BASE_ROW
from harness.report.points import mean_with_interval
from harness.report.table import Table
from harness.stats.joins import paired_scores
from harness.stats.tests import paired_bootstrap
from harness.store import ResultsStore

MEAN_PANEL = "mean of benchmarks"


def tax_panels(store: ResultsStore, knowledge: Table, seed: int = 0) -> dict[str, list[BarPoint]]:
    """Per benchmark column (and their mean): method - base, displayed units, paired bootstrap CI.
    Empty when the table has no base row with runs."""
    base = next((r for r in knowledge.rows if r.name == BASE_ROW and not r.reference), None)
    if base is None or not base.provenance.get("runs"):
        return {}
    panels: dict[str, list[BarPoint]] = {c.label: [] for c in knowledge.columns}
    means: list[BarPoint] = []
    for row in knowledge.rows:
        if row.reference or row is base:
            continue
        deltas = []
        for column in knowledge.columns:
            runs = row.provenance.get("runs", {}).get(column.key)
            base_runs = base.provenance["runs"].get(column.key)
            if not runs or not base_runs:
                continue
            paired = paired_scores(store, runs, base_runs)
            if paired.n < 2:
                continue
            scale = column.scale or 1.0
            diff, low, high, _ = paired_bootstrap(paired.x, paired.y, seed=seed)
            point = BarPoint(row.name, diff * scale, low * scale, high * scale)
            panels[column.label].append(point)
            deltas.append(point)
        if deltas and len(deltas) == len(knowledge.columns):
            means.append(_mean(row.name, deltas))
    if len(knowledge.columns) > 1 and means:
        panels[MEAN_PANEL] = means
    return {name: points for name, points in panels.items() if points}


def _mean(method: str, deltas: Sequence[BarPoint]) -> BarPoint:
    """Mean of the benchmarks' differences, with the CI of `mean_with_interval` (independent items)."""
    mean, (low, high) = mean_with_interval([d.score for d in deltas],
                                           [(d.ci_low, d.ci_high) for d in deltas])  # type: ignore[misc]
    return BarPoint(method, mean, low, high)


def tax_chart(panels: dict[str, list[BarPoint]], out_base: Path, unit: str = "points") -> list[Path]:
    """One panel per benchmark: a horizontal bar per method from 0 to its difference from the base,
    red for a loss, with its paired 95% interval; the same x-range in every panel."""
    names = list(panels)
    cols = min(4, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    n_methods = max(len(p) for p in panels.values())
    reach = max(max(abs(p.ci_low or p.score), abs(p.ci_high or p.score), abs(p.score))
                for pts in panels.values() for p in pts) or 1.0
    fig = new_figure(3.6 * cols, (0.32 * n_methods + 1.2) * rows)
    for index, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, index + 1)
        pts = panels[name]
        ys = range(len(pts))
        err = [[max(p.score - (p.ci_low if p.ci_low is not None else p.score), 0.0) for p in pts],
               [max((p.ci_high if p.ci_high is not None else p.score) - p.score, 0.0) for p in pts]]
        colors = ["#C44E52" if p.score < 0 else "#4C72B0" for p in pts]
        ax.barh(ys, [p.score for p in pts], xerr=err, capsize=2, color=colors, height=0.7)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_xlim(-reach * 1.15, reach * 1.15)
        ax.set_yticks(ys, [p.method for p in pts] if index % cols == 0 else [], fontsize=8)
        ax.invert_yaxis()  # the table's order, top to bottom
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(f"minus base ({unit})", fontsize=8)
    fig.suptitle("Alignment tax: knowledge score minus the base model's (paired 95% CI)")
    return save(fig, out_base)
