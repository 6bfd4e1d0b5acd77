"""The rows of an experiment: what the pipeline trains and the report shows, one home for them.

Without a sweep each method entry is one row; with `sweep: {data_fraction: [...]}` (or
`max_samples`) every method becomes one row per data size (`vanilla@0.25`), each an ordinary
method trained on a nested subset: its experiment has the data section narrowed, so its plan and
run keys differ per size and nothing else in the pipeline needs to know about sweeps.
Subsets are prefixes of one seeded permutation (`select_subset`), hence nested.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.config import DataConfig, Experiment, MethodEntry


@dataclass(frozen=True)
class Row:
    """One row of the comparison: `entry` trained on `experiment` (the sweep's data size applied)."""

    experiment: Experiment
    entry: MethodEntry  # labelled with the row name, e.g. vanilla@0.25
    source: MethodEntry  # the experiment's own method entry
    point: float | int | None  # the sweep's fraction or sample count; None without a sweep
    kind: str = ""  # "data_fraction" or "max_samples" (the sweep's key)


def size_label(point: float | int) -> str:
    return f"{point:g}"


def row_data(experiment: Experiment, point: float | int) -> DataConfig:
    """The data section of one sweep point: a fraction of the experiment's selection, or a count.

    A fraction f of the selection (keep = min(n, ceil(d*n), m)) is the same permutation's prefix of
    min(n, ceil(f*d*n), ceil(f*m)) samples, so every size stays a prefix and the subsets nest.
    """
    data, sweep = experiment.data, experiment.sweep
    assert sweep is not None
    if sweep.data_fraction is not None:
        # round() first: 0.07 * 100 is 7.000000000000001 in floating point, and its ceil 8.
        cap = None if data.max_samples is None else max(1, math.ceil(round(point * data.max_samples, 9)))
        return data.model_copy(update={"data_fraction": data.data_fraction * point, "max_samples": cap})
    return data.model_copy(update={"max_samples": int(point)})


def experiment_rows(experiment: Experiment) -> list[Row]:
    """Every row the experiment trains: its methods, or each method at each sweep size."""
    if experiment.sweep is None:
        return [Row(experiment, entry, entry, None) for entry in experiment.methods]
    kind = "data_fraction" if experiment.sweep.data_fraction is not None else "max_samples"
    rows = []
    for entry in experiment.methods:
        for point in experiment.sweep.points:
            labelled = entry.model_copy(update={"label": f"{entry.row_name}@{size_label(point)}"})
            narrowed = experiment.model_copy(update={"data": row_data(experiment, point),
                                                     "methods": [labelled], "sweep": None})
            rows.append(Row(narrowed, labelled, entry, point, kind))
    return rows


def find_row(experiment: Experiment, row: str) -> Row:
    """The row named `row` (a method's row name, or method@size with a sweep)."""
    for candidate in experiment_rows(experiment):
        if candidate.entry.row_name == row:
            return candidate
    raise KeyError(f"no row {row!r} in experiment {experiment.name!r}")


def selected(row: Row, only: set[str] | None) -> bool:
    """`--only method=NAME` picks a row by its own name, its method's row name or the method name."""
    return only is None or bool({row.entry.row_name, row.source.row_name, row.source.name} & only)


def report_experiment(experiment: Experiment) -> Experiment:
    """The experiment as the report sees it: one method entry per row (vanilla@0.25, ...)."""
    if experiment.sweep is None:
        return experiment
    return experiment.model_copy(update={"methods": [r.entry for r in experiment_rows(experiment)]})
