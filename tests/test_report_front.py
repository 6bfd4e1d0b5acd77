"""The frontier compares families: scaled_vanilla's α-curve, layer_averaging's points and each method
on one figure, and each method's distance to the averaging front with a paired test at the matched
point, all made from a results store."""

from __future__ import annotations

from pathlib import Path

import pytest
from store_fixtures import assert_figure

from harness.report.averaging_front import front_distances, mark_families, paired_difference, to_markdown
from harness.report.from_store import TableOptions, build_tables
from harness.report.frontier import FrontierPoint, averaging_front, dominated, frontier_chart
from harness.report.page import write_report
from harness.report.points import add_cis, frontier_points
from harness.store import EvalRun, ItemRecord, ResultsStore, Score

LAYER_ROW = "layer_averaging[alphas=0,0.5,1]"
# row: (MMLU accuracy, ARC accuracy, MT-bench score, Vicuna-bench score)
ROWS = {"base": (0.50, 0.60, 2.0, 2.0), "scaled_vanilla[alpha=0.5]": (0.46, 0.56, 4.0, 4.0),
        "scaled_vanilla[alpha=1]": (0.40, 0.50, 6.0, 6.0), LAYER_ROW: (0.48, 0.58, 5.0, 5.0),
        "vanilla": (0.40, 0.50, 6.0, 6.0), "dtm": (0.47, 0.55, 5.5, 5.5), "ewc": (0.44, 0.52, 4.5, 4.5)}
SIZES = {"mmlu": 200, "arc_challenge": 100}


def build_store(root: Path) -> None:
    with ResultsStore.open(root) as store:
        store.add_experiment("e", "{}")
        for row, (mmlu, arc, mt, vicuna) in ROWS.items():
            manifest = {"kind": "lora"}
            if row == LAYER_ROW:
                manifest["layer_averaging"] = {"alphas": [0.0, 0.5, 1.0], "blocks": [[0], [1], [2]]}
            store.add_checkpoint(row, "/x", "lora", "h", manifest)
            seed = None if row == "base" else 0
            for benchmark, accuracy in (("mmlu", mmlu), ("arc_challenge", arc)):
                n = SIZES[benchmark]
                items = [ItemRecord(f"q{i}", f"h{i}", None, None, float(i < round(accuracy * n))) for i in range(n)]
                store.record_eval(EvalRun(row, "knowledge", benchmark, "e", row, seed),
                                  [Score("acc", accuracy, n=n)], items)
            for benchmark, score in (("mt_bench", mt), ("vicuna_bench", vicuna)):
                items = [ItemRecord(f"j{i}", f"g{i}", None, None, score + (1 if i % 2 else -1)) for i in range(20)]
                store.record_eval(EvalRun(row, benchmark, benchmark, "e", row, seed), [Score("score", score, n=20)],
                                  items)


@pytest.fixture
def store_points(tmp_path):
    build_store(tmp_path)
    store = ResultsStore.open(tmp_path)
    knowledge, instruction = build_tables(store, TableOptions(experiment="e"))
    for table in (knowledge, instruction):
        add_cis(store, table)
    points = mark_families(store, frontier_points(instruction, knowledge), knowledge)
    yield store, points, knowledge
    store.close()


def test_layer_averaging_rows_join_the_family(store_points):
    _, points, _ = store_points
    by_name = {p.method: p for p in points}
    assert by_name[LAYER_ROW].family == "layer_averaging" and by_name[LAYER_ROW].alpha is None
    assert by_name["base"].alpha == 0.0 and by_name["dtm"].family is None
    assert (by_name[LAYER_ROW].x, by_name[LAYER_ROW].y) == (pytest.approx(5.0), pytest.approx(53.0))
    # α = 0.5 (4, 51) is beaten by the layer point (5, 53): not on the front
    assert [p.method for p in averaging_front(points)] == ["base", LAYER_ROW, "scaled_vanilla[alpha=1]"]


def test_frontier_figure_from_the_store(store_points, tmp_path):
    _, points, _ = store_points
    paths, losers = frontier_chart(points, tmp_path / "frontier")
    assert_figure(paths)
    # ewc (4.5, 48) is below the front (53.33 there); dtm (5.5, 51) above it (49); vanilla sits on it
    assert losers == ["ewc"]


def test_distance_table_from_the_store(store_points):
    store, points, knowledge = store_points
    table = front_distances(store, points, knowledge, n_resamples=2000)
    rows = {r.method: r for r in table.rows}
    assert set(rows) == {"vanilla", "dtm", "ewc"}
    dtm, ewc, vanilla = rows["dtm"], rows["ewc"], rows["vanilla"]
    assert dtm.front_y == pytest.approx(49.0) and dtm.distance == pytest.approx(2.0)
    assert ewc.front_y == pytest.approx(55.0 - 2.0 * 2.5 / 3) and ewc.distance == pytest.approx(48.0 - ewc.front_y)
    assert vanilla.distance == pytest.approx(0.0) and vanilla.matched == "scaled_vanilla[alpha=1]"
    # Matched: the front's nearest point in instruction following (a tie goes to the higher knowledge)
    assert dtm.matched == LAYER_ROW and ewc.matched == LAYER_ROW
    # Paired Δ: mean over benchmarks of the item differences, in points: dtm (-1 + -3) / 2, ewc (-4 + -6) / 2
    assert dtm.diff == pytest.approx(-2.0) and ewc.diff == pytest.approx(-5.0) and vanilla.diff == pytest.approx(0.0)
    assert dtm.n_items == ewc.n_items == 300
    assert vanilla.p_value == pytest.approx(1.0)
    assert ewc.p_value < 0.01 and ewc.ci is not None and ewc.ci[1] < 0
    assert dtm.p_value > ewc.p_value
    text = to_markdown(table)
    assert "| dtm | 5.50 | 51.00 | 49.00 | +2.00 | " + LAYER_ROW in text and "holm-corrected" in text


def test_paired_difference_weights_each_benchmark_once(store_points):
    store, _, knowledge = store_points
    diff, low, high, _, n, skipped = paired_difference(store, knowledge, "ewc", LAYER_ROW, n_resamples=2000)
    # pooled items would give (8 + 6) / 300 = -4.67 points; benchmarks weighted equally give -5
    assert diff == pytest.approx(-5.0) and low < diff < high and n == 300 and skipped == []


def test_base_joins_a_front_of_layer_points_only():
    points = [FrontierPoint("base", 2.0, 55.0, family="base"),
              FrontierPoint(LAYER_ROW, 5.0, 53.0, family="layer_averaging"), FrontierPoint("dtm", 4.0, 50.0)]
    assert [p.method for p in averaging_front(points)] == ["base", LAYER_ROW]
    assert dominated(points) == ["dtm"]


def test_report_page_shows_the_distance_table(tmp_path):
    build_store(tmp_path / "res")
    out = write_report(tmp_path / "res", tmp_path / "report")
    page = out.index.read_text()
    assert "Distance to the model-averaging front" in page and "layer averaging" in page
    table = (tmp_path / "report" / "tables" / "averaging-front.md").read_text()
    assert "| ewc |" in table and "| dtm |" in table
    assert (tmp_path / "report" / "figures" / "frontier.png").is_file()
