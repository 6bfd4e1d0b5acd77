"""The data-size sweep's figure (the DTM paper's Figures 1-3): score vs. data size, one panel per
benchmark, one line per method, with 95% confidence bands (t over seeds, else a bootstrap over the
per-item records), read from the store, so it can be redrawn at any time without re-running.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.analyze.sweep import size_label, sweep_rows
from harness.atomic import write_text_atomic
from harness.config import Experiment
from harness.stats.joins import RunRef, primary_runs
from harness.store import ResultsStore

FIGURE_NAME = "data-size-sweep"
BASE_ROW = "base"


@dataclass(frozen=True)
class SweepPoint:
    benchmark: str
    method: str  # the experiment's method row; a variant keeps its suffix (scaled_vanilla[alpha=0.5])
    size: float  # the sweep's fraction or sample count
    score: float  # in displayed units: accuracies (0..1) as percent
    ci_low: float | None
    ci_high: float | None
    n_seeds: int


def sweep_points(store: ResultsStore, experiment: Experiment) -> list[SweepPoint]:
    """One point per benchmark x method x data size that the store has scores for; the base model's
    scores come as method "base" at size 0 (the figure draws them as a reference line)."""
    from harness.report.points import cell_ci

    rows = {r.entry.row_name: r for r in sweep_rows(experiment) if r.point is not None}
    grouped: dict[tuple[str, str, float], dict[int | None, RunRef]] = defaultdict(dict)
    for run in primary_runs(store, experiment=experiment.name):
        if run.row == BASE_ROW:
            grouped[(run.benchmark, BASE_ROW, 0.0)][run.seed] = run
            continue
        name, bracket, variant = run.row.partition("[")
        row = rows.get(name)
        if row is None or row.point is None:
            continue
        method = row.source.row_name + bracket + variant
        # Runs come by eval id, so a seed evaluated twice keeps its newest eval (as the tables do).
        grouped[(run.benchmark, method, float(row.point))][run.seed] = run
    values: dict[str, list[float]] = defaultdict(list)
    for (benchmark, _, _), by_seed in grouped.items():
        values[benchmark] += [r.value for r in by_seed.values()]
    scales = {b: 100.0 if all(0.0 <= v <= 1.0 for v in vs) else 1.0 for b, vs in values.items()}
    points = []
    for (benchmark, method, size), by_seed in sorted(grouped.items()):
        runs, scale = list(by_seed.values()), scales[benchmark]
        score = sum(r.value for r in runs) / len(runs) * scale
        ci = cell_ci(store, runs, scale)
        points.append(SweepPoint(benchmark, method, size, score, *(ci or (None, None)), len(runs)))
    return points


def sweep_chart(points: list[SweepPoint], out_base: Path, xlabel: str) -> list[Path]:
    """Panels per benchmark; per method a line through its sizes and a shaded 95% band."""
    from harness.report.figures import new_figure, save

    benchmarks = sorted({p.benchmark for p in points})
    cols = min(3, max(1, len(benchmarks)))
    rows = max(1, math.ceil(len(benchmarks) / cols))
    fig = new_figure(4.4 * cols, 3.4 * rows)
    sizes = sorted({p.size for p in points if p.method != BASE_ROW})
    for index, benchmark in enumerate(benchmarks):
        ax = fig.add_subplot(rows, cols, index + 1)
        for base in (p for p in points if p.benchmark == benchmark and p.method == BASE_ROW):
            ax.axhline(base.score, color="#777777", linestyle="--", linewidth=1, label="base model")
        for method in sorted({p.method for p in points if p.benchmark == benchmark and p.method != BASE_ROW}):
            series = sorted((p for p in points if p.benchmark == benchmark and p.method == method),
                            key=lambda p: p.size)
            xs = [p.size for p in series]
            line = ax.plot(xs, [p.score for p in series], marker="o", label=method)[0]
            banded = [p for p in series if p.ci_low is not None and p.ci_high is not None]
            if banded:
                ax.fill_between([p.size for p in banded], [p.ci_low for p in banded],  # type: ignore[misc]
                                [p.ci_high for p in banded], color=line.get_color(), alpha=0.18, linewidth=0)
        if sizes and sizes[-1] / sizes[0] > 20:
            ax.set_xscale("log")  # absolute counts spanning orders of magnitude
        ax.set_xticks(sizes, [size_label(s) for s in sizes], fontsize=8)
        ax.set_title(benchmark)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("score")
        ax.legend(fontsize=7)
    fig.suptitle("Score vs. amount of instruction data (95% bands)")
    return save(fig, out_base)


def write_sweep_figure(experiment: Experiment, results_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Draw `out_dir/figures/data-size-sweep.{png,pdf}` and write its points to `out_dir/data-size-sweep.json`."""
    with ResultsStore.open(results_dir) as store, store.snapshot():
        return draw_sweep(store, experiment, out_dir)


def draw_sweep(store: ResultsStore, experiment: Experiment, out_dir: Path) -> dict[str, Any]:
    """write_sweep_figure on an open store (the leaderboard page draws it inside its own directory)."""
    assert experiment.sweep is not None, "the sweep figure needs an experiment with a sweep section"
    points = sweep_points(store, experiment)
    fractions = experiment.sweep.data_fraction is not None
    xlabel = "fraction of the instruction data" if fractions else "instruction examples"
    data = {"experiment": experiment.name, "x": "data_fraction" if fractions else "max_samples",
            "points": [asdict(p) for p in points]}
    write_text_atomic(Path(out_dir) / f"{FIGURE_NAME}.json", json.dumps(data, indent=1) + "\n")
    if not points:
        return {"points": 0, "figure": [], "note": "no scores for the sweep's rows yet (no suites, or no evals)"}
    paths = sweep_chart(points, Path(out_dir) / "figures" / FIGURE_NAME, xlabel)
    return {"points": len(points), "figure": [str(p) for p in paths], "json": str(Path(out_dir) / f"{FIGURE_NAME}.json")}
