"""Tables from the results store: one row per method (its seeds aggregated to mean ± std), one column
per benchmark's primary metric, missing runs named, and significance marks against a reference
method (tests from `harness.stats.compare.cell_test`, corrected across the benchmarks of each row).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from harness.errors import UserError
from harness.report.data_notes import data_notes, partial_text
from harness.report.table import Cell, Column, Row, Table, normalize, paper_layouts
from harness.stats.compare import cell_test
from harness.stats.corrections import adjust
from harness.stats.joins import RunRef, UnscoredRun, primary_runs, unscored_runs
from harness.store import ResultsStore

BASE_ROW = "base"
_TITLES = {"other": "Other benchmarks", "custom": ""}  # the paper layouts' titles come from the suites
_CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg", "none": "no"}


@dataclass
class TableOptions:
    columns: list[Column] | None = None  # None: the paper's layouts, for the benchmarks the store has
    experiment: str | None = None
    reference_method: str | None = None
    correction: str = "holm"
    alpha: float = 0.05
    show_std: bool = False
    exclude_from_ranking: Sequence[str] = (BASE_ROW,)
    title: str = ""
    row_order: Mapping[str, int] = field(default_factory=dict)  # filled from the store's experiments


def experiment_row_order(store: ResultsStore, experiment: str | None) -> dict[str, int]:
    """Row name -> position: the base model first, then the methods in the order the experiment (or,
    with none given, each experiment in turn) lists them, so a table follows the paper's own order."""
    order = {BASE_ROW: 0}
    try:
        configs = store.experiment_configs()
    except (json.JSONDecodeError, TypeError):  # a hand-edited store: fall back to alphabetical rows
        return order
    for name, config in configs.items():
        if experiment is not None and name != experiment:
            continue
        for entry in config.get("methods") or []:
            row = entry if isinstance(entry, str) else (entry.get("label") or entry.get("name"))
            if isinstance(row, str):
                order.setdefault(row, len(order))
    return order


def row_sort_key(name: str, order: Mapping[str, int]) -> tuple[int, str]:
    """Rows in `order` (variants "m[...]" and sweep sizes "m@f" with their method), the rest alphabetically."""
    stem = name.split("[", 1)[0]
    position = order.get(name, order.get(stem, order.get(stem.split("@", 1)[0], len(order))))
    return (position, name)


def _layout_plan(runs: list[RunRef], options: TableOptions) -> list[tuple[str, str, list[Column]]]:
    """(layout, title, columns) per table: the suites' paper layouts, then any other benchmarks."""
    if options.columns:
        return [("custom", "", list(options.columns))]
    benchmarks = sorted({r.benchmark for r in runs})
    plan, claimed = [], set()
    for layout, (title, columns) in paper_layouts().items():
        present = [c for c in columns if any(c.matches(b) for b in benchmarks)]
        claimed |= {b for b in benchmarks if any(c.matches(b) for c in columns)}
        if present:
            plan.append((layout, title, present))
    others = [Column(b, b) for b in benchmarks if b not in claimed]
    if others:
        plan.append(("other", _TITLES["other"], others))
    return plan


def _scale(column: Column, values: list[float]) -> float:
    if column.scale is not None:
        return column.scale
    return 100.0 if values and all(0.0 <= v <= 1.0 for v in values) else 1.0


def build_tables(store: ResultsStore, options: TableOptions | None = None) -> list[Table]:
    """The tables `atax table` prints for this store (one per layout present, or one of `options.columns`)."""
    options = options or TableOptions()
    with store.snapshot():
        runs = primary_runs(store, experiment=options.experiment)
        if not runs:
            where = f" for experiment {options.experiment!r}" if options.experiment else ""
            raise UserError(f"{store.path}: no scores{where}; evaluate checkpoints first (atax eval / atax run)")
        plan = _layout_plan(runs, options)
        if not plan:
            raise UserError(f"{store.path}: none of the requested benchmarks has scores")
        if not options.row_order:
            order = experiment_row_order(store, options.experiment)
            for run in sorted(runs, key=lambda r: r.eval_id):  # rows no experiment lists: first evaluated first
                if row_sort_key(run.row, order)[0] == len(order):
                    order[run.row] = len(order)
            options = replace(options, row_order=order)
        tables = [build_table(store, runs, columns, layout, replace(options, title=options.title or title))
                  for layout, title, columns in plan]
        every_row = {row.name for table in tables for row in table.rows}
        scored = {r.benchmark for r in runs}
        tables[-1].notes += unscored_notes(unscored_runs(store, experiment=options.experiment), every_row, scored,
                                           options.row_order)
        return tables


def unscored_notes(unscored: list[UnscoredRun], every_row: set[str], scored: set[str],
                   row_order: Mapping[str, int]) -> list[str]:
    """Say why a benchmark that was evaluated has no cells (e.g. a judge whose every rating was
    unusable), instead of leaving it out without a word."""
    by_benchmark: dict[str, list[UnscoredRun]] = defaultdict(list)
    for run in unscored:
        by_benchmark[run.benchmark].append(run)
    notes = []
    for benchmark, runs in sorted(by_benchmark.items()):
        rows = sorted({r.row for r in runs}, key=lambda name: row_sort_key(name, row_order))
        which = "any row" if benchmark not in scored and set(rows) >= every_row else ", ".join(rows)
        why = ""
        if all(r.unusable is not None and r.judged for r in runs):
            unusable = sum(r.unusable or 0 for r in runs)
            judged = sum(r.judged or 0 for r in runs)
            why = f": {unusable:g} of {judged} judgments had no usable rating; check the judge model and its prompts"
        notes.append(f"No {runs[0].metric} on {benchmark} for {which} "
                     f"({len(runs)} eval run{'s' if len(runs) > 1 else ''} without one){why}")
    return notes


def build_table(store: ResultsStore, runs: list[RunRef], columns: list[Column], layout: str,
                options: TableOptions) -> Table:
    grouped: dict[str, dict[str, dict[int | None, RunRef]]] = defaultdict(lambda: defaultdict(dict))
    notes: list[str] = []
    for run in runs:
        column = next((c for c in columns if c.matches(run.benchmark)), None)
        if column is None:
            continue
        earlier = grouped[run.row][column.key].get(run.seed)
        if earlier is not None:  # the same benchmark in two suites: the newer eval wins, and we say so
            notes.append(f"{run.label} on {column.label}: several eval runs (suites {earlier.suite}, {run.suite}); "
                         f"using eval {run.eval_id}")
        grouped[run.row][column.key][run.seed] = run
    scales = {c.key: _scale(c, [r.value for row in grouped.values() for r in row.get(c.key, {}).values()])
              for c in columns}
    rows = []
    for name in sorted(grouped, key=lambda row: row_sort_key(row, options.row_order)):
        by_column = grouped[name]
        seeds = sorted({s for runs_ in by_column.values() for s in runs_}, key=lambda s: (s is None, s or 0))
        cells = {}
        for column in columns:
            present = by_column.get(column.key, {})
            cells[column.key] = _cell(present, scales[column.key])
            notes += _missing(name, column, seeds, present)
        rows.append(Row(name, cells, ranked=name not in options.exclude_from_ranking,
                        provenance={"runs": {k: sorted(v.values(), key=lambda r: r.eval_id)
                                             for k, v in by_column.items()}}))
    # The resolved scales go back into the columns: figures turn raw CIs into displayed units with them.
    columns = [replace(c, scale=scales[c.key]) for c in columns]
    table = Table(columns, rows, title=options.title or _TITLES.get(layout, ""), notes=notes,
                  show_std=options.show_std, layout=layout)
    table.notes += data_notes(store, table)
    if options.reference_method:
        mark_significance(store, table, options.reference_method, options.correction, options.alpha)
    return table


def _cell(present: dict[int | None, RunRef], scale: float) -> Cell:
    if not present:
        return Cell(None)
    values = np.array([r.value for r in present.values()]) * scale
    std = float(np.std(values, ddof=1)) if values.size > 1 else None
    return Cell(float(values.mean()), std, int(values.size), partial=partial_text(present.values()))


def _missing(row: str, column: Column, seeds: list[int | None], present: dict[int | None, RunRef]) -> list[str]:
    if not present:
        which = ", ".join(f"seed {s}" for s in seeds if s is not None)
        return [f"Missing: {row} on {column.label} (no eval run{' for ' + which if which else ''})"]
    absent = [s for s in seeds if s not in present]
    if not absent:
        return []
    have = ", ".join(str(s) for s in present if s is not None)
    return [f"Missing: {row} seed {s} on {column.label} (the cell is the mean over seed(s) {have})" for s in absent]


def mark_significance(store: ResultsStore, table: Table, reference: str, correction: str, alpha: float) -> None:
    """Mark cells significantly better/worse than `reference`'s, after correcting across each row's benchmarks."""
    own = [r for r in table.rows if not r.reference]
    ref_row = next((r for r in own if r.name == reference or normalize(r.name) == normalize(reference)), None)
    if ref_row is None:
        raise UserError(f"--reference-method: no row {reference!r} in the table; rows: "
                        f"{', '.join(r.name for r in own)}")
    ref_runs = ref_row.provenance["runs"]
    tests = set()
    for row in own:
        if row is ref_row:
            continue
        tested: list[tuple[Column, str, float]] = []
        for column in table.columns:
            mine, theirs = row.provenance["runs"].get(column.key), ref_runs.get(column.key)
            if not mine or not theirs:
                continue
            try:
                verdict = cell_test(store, mine, theirs)
            except UserError as exc:  # e.g. different items: say so under the table, test the rest
                table.notes.append(f"No test for {row.name} vs {ref_row.name} on {column.label}: {exc}")
                continue
            tested.append((column, verdict.name, verdict.p_value))
            tests.add(verdict.name)
        if not tested:
            continue
        for (column, test, _), p in zip(tested, adjust([t[2] for t in tested], correction), strict=True):
            cell, ref_cell = row.cell(column.key), ref_row.cell(column.key)
            cell.p_value, cell.test = p, test
            if p <= alpha and cell.value is not None and ref_cell.value is not None and cell.value != ref_cell.value:
                higher = cell.value > ref_cell.value
                cell.significance = "better" if higher != column.lower_is_better else "worse"
    names = {"mcnemar": "McNemar's exact test (0/1 items)", "wilcoxon": "Wilcoxon signed-rank (graded items)",
             "welch_seeds": "Welch's t on seed scores (>= 3 seeds each)"}
    used = "; ".join(names[t] for t in sorted(tests)) or "no test possible"
    table.significance_note = (f"↑/↓: significantly better/worse than {ref_row.name} at alpha = {alpha:g} after "
                               f"{_CORRECTION_NAMES.get(correction, correction)} correction across each row's "
                               f"benchmarks ({used}).")
