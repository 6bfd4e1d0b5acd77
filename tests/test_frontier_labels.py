"""The frontier's point labels are readable: points at the same spot share one label that names them
all, no two labels (nor a label and the legend) overlap, every label stays inside the axes, and a label
moved away from its point is joined to it by a leader line. Checked on the drawn figure's text boxes
at the dpi the figure is saved with."""

from __future__ import annotations

import itertools
import math

import pytest

from harness.report.figures import save
from harness.report.frontier import FrontierPoint, draw_frontier
from harness.report.label_layout import LEADER_PX, Box, combined_text, equal_parts, group_coincident


def _ci(value: float, half: float) -> tuple[float, float]:
    return value - half, value + half


def _point(method: str, x: float, y: float, alpha: float | None = None) -> FrontierPoint:
    return FrontierPoint(method, x, y, _ci(x, 0.4), _ci(y, 4.0), alpha=alpha)


SAME = ("vanilla", "l2", "ewc")  # equal scores, three names (and the α=1 point)
POINTS = (
    [
        _point("scaled_vanilla[alpha=0]", 1.0, 49.0, 0.0),
        _point("scaled_vanilla[alpha=0.5]", 1.0, 49.9, 0.5),
        _point("scaled_vanilla[alpha=1]", 2.1667, 45.36, 1.0),
    ]
    + [_point(name, 2.1667, 45.36) for name in SAME]
    + [_point("data_order_merge", 2.1667, 45.41)]  # about a pixel away: the same spot to the eye
    + [
        _point("dtm", 2.0833, 44.45),
        _point("deita", 2.1667, 44.45),
        _point("replay", 1.75, 47.25),
        _point("uniform_soup", 2.0, 47.85),
        _point("loramoe", 2.667, 39.37),
        FrontierPoint("a_method_with_a_long_name", 3.2, 38.0),
    ]  # rightmost, no CI: its label must stay inside
    + [
        _point(f"near{i}", 2.667 + dx, 39.37 + dy)  # a crowd around loramoe: some labels must move away
        for i, (dx, dy) in enumerate([(0.02, 0.12), (-0.02, -0.1), (0.03, -0.12), (-0.03, 0.1)])
    ]
)


@pytest.fixture(scope="module")
def drawn():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig, _ = draw_frontier(POINTS)
    fig.set_dpi(150)  # as `save` writes the PNG: the offsets are in points, so the layout must hold there too
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return fig, canvas.get_renderer()


def _boxes(fig, renderer) -> dict[str, Box]:
    out = {}
    for text in fig.axes[0].texts:
        e = text.get_bbox_patch().get_window_extent(renderer)  # the label's white backing, around its text
        out[text.get_text()] = Box(e.x0, e.y0, e.x1, e.y1)
    return out


def _names(label: str) -> list[str]:
    flat = label.replace(" =\n", " = ").replace(" ≈\n", " ≈ ")
    return [name.strip("()") for part in flat.split(" ≈ ") for name in part.split(" = ")]


def test_coincident_points_share_one_label_naming_them_all(drawn):
    fig, _ = drawn
    labels = [t.get_text() for t in fig.axes[0].texts]
    combined = [label for label in labels if "vanilla" in _names(label)]
    assert len(combined) == 1, labels
    # equal scores are joined by '=', the nearly equal one by '≈'
    assert combined[0].replace("\n", " ") == "vanilla = l2 = ewc = (α=1) ≈ data_order_merge"
    named = sorted(name for label in labels for name in _names(label))
    assert named == sorted(
        [
            *SAME,
            "data_order_merge",
            "α=1",
            "α=0",
            "α=0.5",
            "dtm",
            "deita",
            "replay",
            "uniform_soup",
            "loramoe",
            "a_method_with_a_long_name",
            "near0",
            "near1",
            "near2",
            "near3",
        ]
    )  # every point named once


def test_no_two_labels_overlap_and_all_stay_inside_the_axes(drawn):
    fig, renderer = drawn
    ax = fig.axes[0]
    boxes = _boxes(fig, renderer)
    overlapping = [
        (a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes.items(), 2) if box_a.overlaps(box_b)
    ]
    assert not overlapping
    legend = ax.get_legend().get_window_extent(renderer)
    assert not [t for t, b in boxes.items() if b.overlaps(Box(legend.x0, legend.y0, legend.x1, legend.y1))]
    axes = ax.get_window_extent(renderer)
    outside = [t for t, b in boxes.items() if not b.inside(Box(axes.x0, axes.y0, axes.x1, axes.y1))]
    assert not outside


def test_a_label_far_from_its_point_has_a_leader_line(drawn):
    fig, renderer = drawn
    for text in fig.axes[0].texts:
        x, y = fig.axes[0].transData.transform(text.xy)
        e = text.get_bbox_patch().get_window_extent(renderer)
        gap = math.hypot(min(max(x, e.x0), e.x1) - x, min(max(y, e.y0), e.y1) - y) / 1.5  # in 100-dpi pixels
        if gap > LEADER_PX + 8:  # beyond the marker and the leader threshold
            assert text.arrow_patch is not None, text.get_text()


def test_the_figure_is_written(tmp_path):
    fig, _ = draw_frontier(POINTS[:4])
    paths = save(fig, tmp_path / "frontier")
    assert sorted(p.suffix for p in paths) == [".pdf", ".png"]


def test_grouping_and_combined_text():
    assert group_coincident([(0, 0), (50, 0), (2.5, 0), (5.0, 0), (50, 0.2), (9, 0)]) == [
        [0, 2, 3],
        [1, 4],
        [5],
    ]
    assert combined_text([["α=1"]]) == "α=1"
    assert combined_text([["vanilla", "l2"]]) == "vanilla = l2"
    assert combined_text([["vanilla", "α=1"], ["dtm"]]) == "vanilla = (α=1) ≈ dtm"
    wrapped = combined_text([["vanilla", "l2", "ewc", "data_order_merge", "α=1"]])
    assert wrapped == "vanilla = l2 = ewc =\ndata_order_merge = (α=1)"
    assert equal_parts([0, 1, 2], [(1.0, 2.0), (1.0, 2.01), (1.0, 2.0)]) == [[0, 2], [1]]
