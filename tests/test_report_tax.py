"""The alignment-tax figure: each row's knowledge score minus the base's with a paired bootstrap CI on
the shared items, a mean-of-benchmarks panel, and a page that draws it (or says why not)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from store_fixtures import ACCURACY, EXPERIMENT, assert_figure, build_store, item_scores

from harness.report.from_store import TableOptions, build_tables
from harness.report.tax_figure import MEAN_PANEL, tax_chart, tax_panels
from harness.stats.tests import paired_bootstrap
from harness.store import ResultsStore


def test_differences_from_base_are_paired_and_averaged(tmp_path: Path) -> None:
    build_store(tmp_path / "r")
    with ResultsStore.open(tmp_path / "r") as store:
        knowledge = build_tables(store, TableOptions(experiment=EXPERIMENT))[0]
        panels = tax_panels(store, knowledge)
    assert set(panels) == {"MMLU", "GSM8K", "HumanEval", MEAN_PANEL}
    dtm = next(p for p in panels["MMLU"] if p.method == "dtm")
    # dtm has 2 seeds: their items are stacked against the base's (one seed) on the same items.
    x = np.concatenate([item_scores("dtm", "mmlu", s) for s in (0, 1)])
    y = np.concatenate([item_scores("base", "mmlu", None)] * 2)
    diff, low, high, _ = paired_bootstrap(x, y)
    assert (dtm.score, dtm.ci_low, dtm.ci_high) == pytest.approx((100 * diff, 100 * low, 100 * high))
    assert dtm.score == pytest.approx(100 * (ACCURACY["dtm"]["mmlu"] - ACCURACY["base"]["mmlu"]))
    # l2 lacks GSM8K: it has no mean (a mean over other benchmarks would not be comparable).
    assert "l2" not in {p.method for p in panels[MEAN_PANEL]}
    means = {p.method: p.score for p in panels[MEAN_PANEL]}
    assert means["vanilla"] == pytest.approx(np.mean([p.score for panel in ("MMLU", "GSM8K", "HumanEval")
                                                      for p in panels[panel] if p.method == "vanilla"]))
    assert "base" not in means
    assert_figure(tax_chart(panels, tmp_path / "fig" / "alignment-tax"))


def test_no_base_row_no_figure(tmp_path: Path) -> None:
    rows = {name: levels for name, levels in ACCURACY.items() if name != "base"}
    build_store(tmp_path / "r", rows)
    with ResultsStore.open(tmp_path / "r") as store:
        knowledge = build_tables(store, TableOptions(experiment=EXPERIMENT))[0]
        assert tax_panels(store, knowledge) == {}
