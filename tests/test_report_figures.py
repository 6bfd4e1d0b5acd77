"""Figures: every kind is written as a non-blank PNG and a PDF; the frontier's dominance rule; the
figure inputs read from a store (data sizes and K from the checkpoints' manifests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from store_fixtures import assert_figure

from harness.report.figures import (
    BarPoint,
    KPoint,
    SizePoint,
    bar_chart,
    error_overlap_chart,
    k_curve,
    tax_curve,
    wrong_count_chart,
)
from harness.report.from_store import TableOptions, build_tables
from harness.report.frontier import FrontierPoint, curve_height, dominated, frontier_chart
from harness.report.points import k_points, size_points
from harness.stats.overlap import accuracy_by_wrong_count, error_overlap
from harness.store import EvalRun, ItemRecord, ResultsStore, Score


def test_every_figure_kind_is_written(tmp_path: Path) -> None:
    bars = {"MMLU": [BarPoint("vanilla", 49.7, 48.9, 50.5), BarPoint("dtm", 50.4, 49.6, 51.2)],
            "GSM8K": [BarPoint("vanilla", 18.5), BarPoint("dtm", 20.6, 19.0, 22.1)]}
    assert_figure(bar_chart(bars, tmp_path / "bars", ylabel="score (%)"))
    sizes = [SizePoint(m, n, s, s - 1, s + 1) for m, base in (("vanilla", 40.0), ("dtm", 41.0))
             for n, s in ((1000, base), (10000, base + 2), (100000, base + 1))]
    assert_figure(tax_curve(sizes, tmp_path / "tax"))
    assert_figure(k_curve([KPoint("MMLU", k, 50 + k * 0.1) for k in (2, 3, 4, 5, 6)], tmp_path / "k"))
    errors = {f"sub-model {k}": {f"i{j}" for j in range(100) if (j * (k + 3)) % 7 < 3} for k in range(4)}
    assert_figure(error_overlap_chart(error_overlap(errors), tmp_path / "overlap"))
    items = [f"i{j}" for j in range(100)]
    subs = {name: {i: 0.0 if i in wrong else 1.0 for i in items} for name, wrong in errors.items()}
    merged = {i: float(sum(s[i] for s in subs.values()) >= 2) for i in items}
    assert_figure(wrong_count_chart(accuracy_by_wrong_count(subs, merged), tmp_path / "wrong"))


def curve() -> list[FrontierPoint]:
    return [FrontierPoint("base", 3.0, 40.0, alpha=0.0), FrontierPoint("sv[0.5]", 4.0, 38.0, alpha=0.5),
            FrontierPoint("sv[1]", 5.0, 35.0, alpha=1.0)]


def test_dominance_is_below_the_alpha_curve() -> None:
    points = [*curve(),
              FrontierPoint("above", 4.5, 37.0),  # curve height at 4.5 is 36.5
              FrontierPoint("below", 3.5, 38.5),  # curve height at 3.5 is 39.0
              FrontierPoint("right-of-curve", 5.5, 30.0),  # outside the x-range: no curve point beats it on x
              FrontierPoint("left-and-low", 2.5, 39.0),  # outside: base (3.0, 40.0) is better on both axes
              FrontierPoint("left-and-high", 2.5, 41.0)]
    assert curve_height(curve(), 4.5) == pytest.approx(36.5)
    assert curve_height(curve(), 6.0) is None
    assert dominated(points) == ["below", "left-and-low"]
    assert dominated([FrontierPoint("alone", 1.0, 1.0)]) == []  # no curve, nothing dominated


def test_frontier_chart_returns_dominated_methods(tmp_path: Path) -> None:
    points = [*curve(), FrontierPoint("dtm", 4.6, 39.0, (4.4, 4.8), (38.0, 40.0)), FrontierPoint("ewc", 3.5, 37.0)]
    paths, losers = frontier_chart(points, tmp_path / "frontier")
    assert_figure(paths)
    assert losers == ["ewc"]


def _manifest(row: str, k: int | None, n_records: int) -> dict:
    run = {"kind": "lora", "training": {}, "data": {"n_records": n_records},
           "provenance": {"method": row, "method_name": row.split("-")[0], "options": {}}}
    if k is None:
        return run
    return {"kind": "lora", "merge": {"op": "average", "inputs": [{"run_key": f"{row}-sub{i}"} for i in range(k)]},
            "provenance": {"method": "dtm", "options": {"k": k}}}


def test_size_and_k_points_come_from_the_manifests(tmp_path: Path) -> None:
    rows = {"vanilla-small": (None, 100, 0.40), "vanilla-large": (None, 1000, 0.45), "dtm-k2": (2, 500, 0.47),
            "dtm-k4": (4, 250, 0.49)}
    with ResultsStore.open(tmp_path) as store:
        for row, (k, n_records, level) in rows.items():
            store.add_checkpoint(row, "/x", "lora", "h", _manifest(row, k, n_records))
            for i in range(k or 0):  # the sub-model runs, each on n_records examples
                store.add_checkpoint(f"{row}-sub{i}", "/x", "lora", "h", _manifest(f"dtm-{i}", None, n_records))
            scores = (np.arange(100) < level * 100).astype(float)
            items = [ItemRecord(f"q{i}", f"h{i}", None, None, float(v)) for i, v in enumerate(scores)]
            store.record_eval(EvalRun(row, "knowledge", "mmlu", None, row, 0), [Score("acc", float(scores.mean()))], items)
        (table,) = build_tables(store, TableOptions())
        sizes = size_points(store, table)
        ks = k_points(store, table)
    # Both DTM variants saw 1,000 examples in all (2 x 500, 4 x 250): one size, so no DTM curve.
    assert sorted((p.method, p.data_size, p.score) for p in sizes) == [
        ("vanilla", 100.0, pytest.approx(40.0)), ("vanilla", 1000.0, pytest.approx(45.0))]
    assert [(p.series, p.k, p.score) for p in ks if p.series == "MMLU"] == [("MMLU", 2, pytest.approx(47.0)),
                                                                           ("MMLU", 4, pytest.approx(49.0))]


def test_data_size_counts_instruction_records_not_replayed_text(tmp_path: Path) -> None:
    from harness.report.provenance import data_size

    replay = {"kind": "lora", "training": {}, "data": {"n_records": 128, "n_instruction_records": 64}}
    old = {"kind": "lora", "training": {}, "data": {"n_records": 50}}  # a manifest from before the split count
    with ResultsStore.open(tmp_path) as store:
        store.add_checkpoint("replay", "/x", "lora", "h", replay)
        store.add_checkpoint("old", "/x", "lora", "h", old)
        assert (data_size(store, "replay"), data_size(store, "old")) == (64, 50)
