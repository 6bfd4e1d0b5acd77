"""The paper's figures from plain inputs (lists of points), as PNG + PDF: scores with confidence
intervals per method, the alignment-tax curve over data size, the error-set overlap of K
sub-models (Figure 8) and the merge's accuracy by how many sub-models erred (Figure 9), score vs K
(Figure 11). The trade-off frontier lives in `harness.report.frontier`.

matplotlib's object API (`Figure`, no pyplot): no global state, no GUI backend, safe in threads.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.stats.overlap import ErrorOverlap, WrongCountBin

FIGURE_FORMATS = ("png", "pdf")


@dataclass(frozen=True)
class BarPoint:
    method: str
    score: float
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass(frozen=True)
class SizePoint:
    """One model of the alignment-tax curve: `method` trained on `data_size` instruction examples."""

    method: str
    data_size: float
    score: float
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass(frozen=True)
class KPoint:
    series: str  # a benchmark, or "mean"
    k: int
    score: float
    ci_low: float | None = None
    ci_high: float | None = None


def new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def save(fig: Any, out_base: Path) -> list[Path]:
    """Write `out_base.png` and `out_base.pdf`; return their paths."""
    out_base = Path(out_base)
    out_base.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FIGURE_FORMATS:
        path = out_base.with_suffix(f".{fmt}")
        # PDF metadata without a creation date, so the same inputs give the same file.
        fig.savefig(path, format=fmt, dpi=150, metadata={"CreationDate": None} if fmt == "pdf" else None)
        paths.append(path)
    return paths


def _yerr(points: Sequence[Any]) -> list[list[float]] | None:
    if not any(p.ci_low is not None and p.ci_high is not None for p in points):
        return None
    low = [p.score - p.ci_low if p.ci_low is not None else 0.0 for p in points]
    high = [p.ci_high - p.score if p.ci_high is not None else 0.0 for p in points]
    return [[max(v, 0.0) for v in low], [max(v, 0.0) for v in high]]


def bar_chart(panels: Mapping[str, Sequence[BarPoint]], out_base: Path, ylabel: str = "score",
              title: str = "") -> list[Path]:
    """One panel per benchmark: a horizontal bar per method with its 95% confidence interval.

    Bars start at 0, so equal scores are equal bars (a floor at the minimum would draw nothing for
    a benchmark every method aces) and differences are not exaggerated; method names sit on the
    y-axis, where long names stay readable.
    """
    names = [n for n, pts in panels.items() if pts]
    cols = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    n_methods = max((len(panels[n]) for n in names), default=1)
    fig = new_figure(4.6 * cols, (0.32 * n_methods + 1.1) * rows)
    for index, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, index + 1)
        pts = list(panels[name])
        ys = range(len(pts))
        xerr = _yerr(pts)
        ax.barh(ys, [p.score for p in pts], xerr=xerr, capsize=2, color="#4C72B0", height=0.7)
        ax.set_yticks(ys, [p.method for p in pts], fontsize=8)
        ax.invert_yaxis()  # the table's order, top to bottom
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(ylabel, fontsize=8)
        highs = [p.ci_high if p.ci_high is not None else p.score for p in pts]
        top = max(highs + [p.score for p in pts])
        ax.set_xlim(0, top * 1.18 if top > 0 else 1.0)
        for y, p, high in zip(ys, pts, highs, strict=True):  # the value past the CI's end, clear of it
            ax.annotate(f"{p.score:.1f}" if abs(p.score) >= 10 else f"{p.score:.2f}", (max(p.score, high), y),
                        xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    if title:
        fig.suptitle(title)
    return save(fig, out_base)


def _by(points: Sequence[Any], attr: str) -> dict[str, list[Any]]:
    groups: dict[str, list[Any]] = defaultdict(list)
    for p in points:
        groups[getattr(p, attr)].append(p)
    return groups


def tax_curve(points: Sequence[SizePoint], out_base: Path, ylabel: str = "mean knowledge score",
              title: str = "Alignment tax vs. amount of instruction data") -> list[Path]:
    """Score vs. number of instruction examples, one line per method, with CI bands."""
    fig = new_figure(6, 4)
    ax = fig.add_subplot()
    for method, pts in _by(points, "method").items():
        pts = sorted(pts, key=lambda p: p.data_size)
        ax.errorbar([p.data_size for p in pts], [p.score for p in pts], yerr=_yerr(pts), marker="o", capsize=3,
                    label=method)
    ax.set_xscale("log")
    ax.set_xlabel("instruction examples")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save(fig, out_base)


def k_curve(points: Sequence[KPoint], out_base: Path, ylabel: str = "score",
            title: str = "Score vs. number of sub-models K") -> list[Path]:
    """Score vs K, one line per benchmark (the paper's Figure 11)."""
    fig = new_figure(6, 4)
    ax = fig.add_subplot()
    for series, pts in _by(points, "series").items():
        pts = sorted(pts, key=lambda p: p.k)
        ax.errorbar([p.k for p in pts], [p.score for p in pts], yerr=_yerr(pts), marker="o", capsize=3, label=series)
    ax.set_xticks(sorted({p.k for p in points}))
    ax.set_xlabel("K (sub-models)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save(fig, out_base)


def error_overlap_chart(overlap: ErrorOverlap, out_base: Path, title: str = "") -> list[Path]:
    """UpSet-style: bars are the share of all error items missed by exactly the marked sub-models."""
    # Largest first; the 20 largest patterns cover what a reader can see (K=6 has 63 patterns).
    patterns = sorted(overlap.patterns.items(), key=lambda kv: (-kv[1], len(kv[0])))[:20]
    fig = new_figure(max(5.0, 0.5 * len(patterns) + 2), 4.5)
    grid = fig.add_gridspec(2, 1, height_ratios=[3, 1.2])
    bars, dots = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
    shares = [100.0 * count / overlap.total for _, count in patterns]
    xs = range(len(patterns))
    bars.bar(xs, shares, color="#4C72B0")
    for x, share in zip(xs, shares, strict=True):
        bars.annotate(f"{share:.1f}%", (x, share), ha="center", va="bottom", fontsize=7)
    bars.set_ylabel("share of error items (%)")
    bars.set_xticks([])
    bars.set_title(title or f"Error-set overlap of {len(overlap.models)} sub-models ({overlap.total} error items)")
    for x, (pattern, _) in enumerate(patterns):
        for y, model in enumerate(overlap.models):
            dots.plot(x, y, "o", color="#222222" if model in pattern else "#dddddd", markersize=7)
        members = [y for y, m in enumerate(overlap.models) if m in pattern]
        if len(members) > 1:
            dots.plot([x, x], [min(members), max(members)], color="#222222", linewidth=1.5)
    dots.set_yticks(range(len(overlap.models)), list(overlap.models), fontsize=8)
    dots.set_xticks([])
    dots.set_xlim(bars.get_xlim())
    dots.set_ylim(-0.5, len(overlap.models) - 0.5)
    for side in ("top", "right", "bottom"):
        dots.spines[side].set_visible(False)
    return save(fig, out_base)


def wrong_count_chart(bins: Sequence[WrongCountBin], out_base: Path, title: str = "") -> list[Path]:
    """The merged model's accuracy on items that k sub-models got wrong (the paper's Figure 9)."""
    fig = new_figure(5.5, 3.8)
    ax = fig.add_subplot()
    shown = [b for b in bins if b.n_items]
    accuracies = [100.0 * (b.merged_accuracy or 0.0) for b in shown]
    ax.bar([b.wrong for b in shown], accuracies, color="#55A868")
    for b, acc in zip(shown, accuracies, strict=True):
        ax.annotate(f"{acc:.1f}% (n={b.n_items})", (b.wrong, acc), ha="center", va="bottom", fontsize=7)
    ax.set_xticks([b.wrong for b in bins])
    ax.set_xlabel("sub-models that got the item wrong")
    ax.set_ylabel("merged model accuracy (%)")
    ax.set_ylim(0, 110)
    ax.set_title(title or "Merged model accuracy by sub-model errors", fontsize=10, wrap=True)
    return save(fig, out_base)
