"""The trade-off frontier: instruction following (x) against mean knowledge score (y), one point per
method, against the model-averaging family (Lin et al. 2024): the `scaled_vanilla` control
(base + α·Δ_vanilla) drawn as a curve over α, and `layer_averaging` (one α per block of layers) as
points of their own.

Shrinking vanilla's update trades instruction following for knowledge by itself, so a method that
retains knowledge only means something if it sits above the averaging front (the best of the
family) at its own instruction-following level. A method below it is *dominated*: averaging plain
vanilla does as well on both axes.

Point labels are placed by `harness.report.label_layout`: points at one spot share a label, and no two
labels overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.report.figures import new_figure, save
from harness.report.label_layout import PointLabel, label_points

LAYER_AVERAGING = "layer_averaging"
BASE = "base"  # the base model: every α 0, a member of the family once the family has other points
_METHOD_STYLE = {"fontsize": 8, "color": "black"}
_FAMILY_STYLE = {"fontsize": 7, "color": "#555555"}
_LAYER_STYLE = {"fontsize": 6, "color": "#3A7A4C"}


@dataclass(frozen=True)
class FrontierPoint:
    method: str
    x: float  # instruction-following score (e.g. mean of MT-bench and Vicuna-bench)
    y: float  # mean knowledge score
    x_ci: tuple[float, float] | None = None
    y_ci: tuple[float, float] | None = None
    alpha: float | None = None  # set on the points of the α-curve
    family: str | None = None  # "layer_averaging" or "base" for those members of the averaging family


def is_averaging(point: FrontierPoint) -> bool:
    return point.alpha is not None or point.family in (LAYER_AVERAGING, BASE)


def alpha_curve(points: Sequence[FrontierPoint]) -> list[FrontierPoint]:
    """The α-curve's points in α order."""
    return sorted((p for p in points if p.alpha is not None), key=lambda p: p.alpha or 0.0)


def curve_height(curve: Sequence[FrontierPoint], x: float) -> float | None:
    """The curve's knowledge score at instruction score `x` (linear between neighbouring points in x,
    the higher one where two share an x); None outside the curve's x-range."""
    if not curve:
        return None
    xs = sorted({p.x for p in curve})
    ys = [max(p.y for p in curve if p.x == v) for v in xs]
    if x < xs[0] or x > xs[-1]:
        return None
    return float(np.interp(x, xs, ys))


def averaging_front(points: Sequence[FrontierPoint]) -> list[FrontierPoint]:
    """The averaging family's Pareto front (no member is as good on both axes and better on one), by x."""
    family = [p for p in points if is_averaging(p)]
    front = [p for p in family
             if not any(q.x >= p.x and q.y >= p.y and (q.x > p.x or q.y > p.y) for q in family)]
    return sorted({(p.x, p.y): p for p in front}.values(), key=lambda p: p.x)


def dominated(points: Sequence[FrontierPoint]) -> list[str]:
    """Methods below the averaging front: under its interpolation inside its x-range; outside it,
    beaten on both axes (at least as good on each, better on one) by a point of the front."""
    front = averaging_front(points)
    out = []
    for p in points:
        if is_averaging(p):
            continue
        height = curve_height(front, p.x)
        if height is not None:
            below = p.y < height
        else:
            below = any(q.x >= p.x and q.y >= p.y and (q.x > p.x or q.y > p.y) for q in front)
        if below:
            out.append(p.method)
    return out


def _err(center: float, ci: tuple[float, float] | None) -> list[list[float]] | None:
    if ci is None:
        return None
    return [[max(center - ci[0], 0.0)], [max(ci[1] - center, 0.0)]]


def _draw_family(ax: Any, points: Sequence[FrontierPoint], curve_label: str) -> list[PointLabel]:
    """Draw the averaging family; return its points' labels (placed later, with every other label)."""
    labels = []
    curve = alpha_curve(points)
    if curve:
        ax.plot([p.x for p in curve], [p.y for p in curve], "-", color="#888888", linewidth=1.5,
                label=curve_label, zorder=1)
        for p in curve:
            ax.errorbar(p.x, p.y, xerr=_err(p.x, p.x_ci), yerr=_err(p.y, p.y_ci), fmt="s", color="#888888",
                        markersize=5, capsize=2, zorder=2)
            labels.append(PointLabel(f"α={p.alpha:g}", p.x, p.y, _FAMILY_STYLE, rank=1))
    layers = [p for p in points if p.family == LAYER_AVERAGING]
    for n, p in enumerate(layers):
        ax.errorbar(p.x, p.y, xerr=_err(p.x, p.x_ci), yerr=_err(p.y, p.y_ci), fmt="^", color="#55A868",
                    markersize=6, capsize=2, zorder=2, label="layer averaging (α per block)" if n == 0 else None)
        labels.append(PointLabel(p.method.partition("[")[2].rstrip("]") or p.method, p.x, p.y, _LAYER_STYLE, rank=2))
    if layers:
        front = averaging_front(points)
        ax.plot([p.x for p in front], [p.y for p in front], "--", color="#333333", linewidth=1.0,
                label="averaging front", zorder=1)
    return labels


def draw_frontier(points: Sequence[FrontierPoint], xlabel: str = "instruction following",
                  ylabel: str = "mean knowledge score", title: str = "Alignment-tax trade-off frontier",
                  curve_label: str = "scaled vanilla (base + α·Δ)") -> tuple[Any, list[str]]:
    """The frontier as a matplotlib Figure, its labels placed; and the methods below the averaging front."""
    fig = new_figure(6.5, 4.8)
    ax = fig.add_subplot()
    ax.margins(0.08)  # room for the labels of the outermost points inside the axes
    labels = _draw_family(ax, points, curve_label)
    losers = set(dominated(points))
    labelled = set()
    for p in points:
        if is_averaging(p):
            continue
        is_dominated = p.method in losers
        kind = "below the averaging front" if is_dominated else "not dominated"
        ax.errorbar(p.x, p.y, xerr=_err(p.x, p.x_ci), yerr=_err(p.y, p.y_ci), fmt="o", capsize=2, zorder=3,
                    color="#C44E52" if is_dominated else "#4C72B0",
                    markerfacecolor="white" if is_dominated else "#4C72B0",
                    label=None if kind in labelled else kind)
        labelled.add(kind)
        labels.append(PointLabel(p.method, p.x, p.y, _METHOD_STYLE, rank=0))
    base = next((p for p in points if p.family == BASE and p.alpha is None), None)
    if base is not None:
        ax.plot(base.x, base.y, "D", color="#888888", markersize=5, zorder=2)
        labels.append(PointLabel(BASE, base.x, base.y, _FAMILY_STYLE, rank=1))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    label_points(fig, ax, labels)
    return fig, sorted(losers)


def frontier_chart(points: Sequence[FrontierPoint], out_base: Path, xlabel: str = "instruction following",
                   ylabel: str = "mean knowledge score", title: str = "Alignment-tax trade-off frontier",
                   curve_label: str = "scaled vanilla (base + α·Δ)") -> tuple[list[Path], list[str]]:
    """Draw the frontier; return the written files and the methods below the averaging front."""
    fig, losers = draw_frontier(points, xlabel, ylabel, title, curve_label)
    return save(fig, out_base), losers
