"""From the store's tables to the figures' plain inputs: confidence intervals per cell, frontier
points, alignment-tax curve points (data size from the manifests), score-vs-K points, and the
sub-model error sets behind Figures 8 and 9.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.report.figures import BarPoint, KPoint, SizePoint
from harness.report.frontier import FrontierPoint
from harness.report.provenance import data_size, method_options, registered_method, stored_manifest
from harness.report.table import Row, Table
from harness.stats.joins import RunRef, primary_runs
from harness.stats.overlap import ErrorOverlap, WrongCountBin, accuracy_by_wrong_count, error_overlap
from harness.stats.tests import mean_ci
from harness.store import ResultsStore

_ALPHA = re.compile(r"\[alpha=([0-9.eE+-]+)\]$")
_Z95 = 1.959963984540054


def cell_ci(store: ResultsStore, runs: Sequence[RunRef], scale: float) -> tuple[float, float] | None:
    """95% CI of a cell in displayed units: a t-interval over seeds (>= 2), else a bootstrap over the
    run's items, else the stored standard error; None when none is known."""
    from scipy.stats import t

    if len(runs) >= 2:
        values = np.array([r.value for r in runs]) * scale
        half = t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
        return float(values.mean() - half), float(values.mean() + half)
    (run,) = runs
    scores = [i.score for i in store.items(run.eval_id) if i.score is not None]
    if len(scores) >= 2:
        _, low, high = mean_ci(scores)
        return low * scale, high * scale
    if run.stderr is not None:
        return (run.value - _Z95 * run.stderr) * scale, (run.value + _Z95 * run.stderr) * scale
    return None


def add_cis(store: ResultsStore, table: Table) -> None:
    """Fill `cell.ci` for every own row's cells (needs the rows' runs, as `build_table` records them)."""
    for row in table.rows:
        if row.reference:
            continue
        for column in table.columns:
            runs = row.provenance.get("runs", {}).get(column.key)
            cell = row.cell(column.key)
            if runs and cell.value is not None:
                cell.ci = cell_ci(store, runs, column.scale or 1.0)


def bar_panels(table: Table) -> dict[str, list[BarPoint]]:
    return {c.label: [BarPoint(r.name, r.cell(c.key).value, *(r.cell(c.key).ci or (None, None)))  # type: ignore[arg-type]
                      for r in table.rows if not r.reference and r.cell(c.key).value is not None]
            for c in table.columns}


def mean_with_interval(values: Sequence[float],
                       intervals: Sequence[tuple[float, float]]) -> tuple[float, tuple[float, float]]:
    """Mean of k estimates and its CI: half-width sqrt(sum of half-widths^2) / k (independent estimates)."""
    mean = float(np.mean(values))
    half = math.sqrt(sum(((high - low) / 2) ** 2 for low, high in intervals)) / len(intervals)
    return mean, (mean - half, mean + half)


def _mean_with_ci(row: Row, table: Table) -> tuple[float, tuple[float, float] | None] | None:
    """Mean over the table's columns, with `mean_with_interval`'s CI when every column has one."""
    cells = [row.cell(c.key) for c in table.columns]
    if not cells or any(c.value is None for c in cells):
        return None
    values = [c.value for c in cells]
    if any(c.ci is None for c in cells):
        return float(np.mean(values)), None
    return mean_with_interval(values, [c.ci for c in cells])  # type: ignore[misc]


def frontier_points(instruction: Table, knowledge: Table) -> list[FrontierPoint]:
    """One point per row present with every column of both tables; scaled_vanilla[alpha=a] rows form the
    α-curve, with the base model as α = 0 when it has both scores."""
    points = []
    has_curve = any(_ALPHA.search(r.name) for r in knowledge.rows)
    for row in knowledge.rows:
        if row.reference:
            continue
        other = next((r for r in instruction.rows if r.name == row.name and not r.reference), None)
        x, y = (_mean_with_ci(other, instruction) if other else None), _mean_with_ci(row, knowledge)
        if x is None or y is None:
            continue
        match = _ALPHA.search(row.name)
        alpha = float(match.group(1)) if match else (0.0 if row.name == "base" and has_curve else None)
        points.append(FrontierPoint(row.name, x[0], y[0], x[1], y[1], alpha))
    return points


def size_points(store: ResultsStore, knowledge: Table) -> list[SizePoint]:
    """(method, instruction examples, mean knowledge score) for methods seen at >= 2 data sizes."""
    found: dict[str, dict[float, list[tuple[float, tuple[float, float] | None]]]] = defaultdict(dict)
    for row in knowledge.rows:
        runs = [r for runs in row.provenance.get("runs", {}).values() for r in runs]
        if row.reference or not runs:
            continue
        size = data_size(store, runs[0].checkpoint)
        score = _mean_with_ci(row, knowledge)
        if size is None or score is None:
            continue
        # The registered method, from the row's own checkpoint (a sub-run may be shared with another method).
        family = registered_method(store, runs[0].checkpoint) or row.name.split("[")[0]
        found[family].setdefault(float(size), []).append(score)
    return [SizePoint(family, size, s[0][0], *(s[0][1] or (None, None)))
            for family, sizes in found.items() if len(sizes) >= 2 for size, s in sorted(sizes.items())]


def k_points(store: ResultsStore, table: Table) -> list[KPoint]:
    """Score vs K for DTM rows that differ in `k` (one series per benchmark, plus their mean)."""
    by_k: dict[int, Row] = {}
    for row in table.rows:
        runs = [r for runs in row.provenance.get("runs", {}).values() for r in runs]
        k = method_options(store, runs[0].checkpoint).get("k") if runs and not row.reference else None
        if isinstance(k, int) and k not in by_k:
            by_k[k] = row
    if len(by_k) < 2:
        return []
    points = []
    for k, row in sorted(by_k.items()):
        for column in table.columns:
            cell = row.cell(column.key)
            if cell.value is not None:
                points.append(KPoint(column.label, k, cell.value, *(cell.ci or (None, None))))
        mean = _mean_with_ci(row, table)
        if mean is not None:
            points.append(KPoint("mean", k, mean[0], *(mean[1] or (None, None))))
    return points


@dataclass(frozen=True)
class SubmodelAnalysis:
    merged: str  # the merged model's row label
    benchmark: str
    overlap: ErrorOverlap
    bins: list[WrongCountBin]


def submodel_analyses(store: ResultsStore, experiment: str | None = None) -> list[SubmodelAnalysis]:
    """For each merged checkpoint whose sub-models were evaluated on the same 0/1 benchmark too."""
    runs = primary_runs(store, experiment=experiment)
    by_checkpoint: dict[tuple[str, str], RunRef] = {(r.checkpoint, r.benchmark): r for r in runs}
    everything = primary_runs(store)  # sub-model evals may be recorded outside the experiment
    any_checkpoint = {(r.checkpoint, r.benchmark): r for r in everything}
    out = []
    for (key, benchmark), merged_run in sorted(by_checkpoint.items()):
        m = stored_manifest(store, key)
        inputs = m.parents if m is not None and m.merge is not None else []
        subs = [any_checkpoint.get((k, benchmark)) for k in inputs]
        if len(inputs) < 2 or any(s is None for s in subs):
            continue
        merged_scores = {i.item_id: i.score for i in store.items(merged_run.eval_id) if i.score is not None}
        sub_scores = {f"sub-model {n + 1}": {i.item_id: i.score for i in store.items(s.eval_id) if i.score is not None}
                      for n, s in enumerate(subs)}  # type: ignore[union-attr]
        values = [*merged_scores.values(), *(v for s in sub_scores.values() for v in s.values())]
        if not values or any(v not in (0.0, 1.0) for v in values):
            continue  # error sets need right/wrong items
        errors = {name: {i for i, v in scores.items() if v < 1} for name, scores in sub_scores.items()}
        overlap = error_overlap(errors)
        if overlap.total:
            out.append(SubmodelAnalysis(merged_run.label, benchmark, overlap,
                                        accuracy_by_wrong_count(sub_scores, merged_scores)))  # type: ignore[arg-type]
    return out
