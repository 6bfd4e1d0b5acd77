"""Readable point labels on a drawn matplotlib axes: points at the same spot share one label, and every
label goes to the nearest free place around its point, inside the axes, never over another label, a
marker or the legend, crossing as few lines (error bars, curves) as it can, with a thin leader line
when it had to move away from its point or sits nearer to another point than to its own.

The placement is greedy over candidate offsets in pixels of the laid-out figure, so it measures each
text as matplotlib renders it; offsets are then given in points, which keeps them right at any dpi.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

COINCIDENT_PX = 3.0  # points closer than this (pixels at 100 dpi) look like one marker: they get one label
GAP_PX = 3.0  # free space kept between two labels, and between a label and the axes' edge
LEADER_PX = 12.0  # a label farther than this from its marker gets a leader line
WRAP_CHARS = 30  # a combined label wraps at its separators past this many characters
# How far from its point a label may go (pixels between the point and the label's near side).
RADII_PX = (3.0, 8.0, 14.0, 22.0, 32.0, 44.0, 58.0, 75.0, 95.0, 120.0, 150.0, 190.0, 240.0)
LINE_COST = 0.5  # cost per pixel of line under a label, against 1 per pixel of distance from the point
LEADER_CROSSING_COST = 400.0  # a leader line drawn through another label
# Error-bar caps and plain lines: crossed, not avoided.
_SOFT_MARKERS = {"|", "_", "None", "none", "", " ", None}


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle in display pixels."""

    x0: float
    y0: float
    x1: float
    y1: float

    def grown(self, by: float) -> Box:
        return Box(self.x0 - by, self.y0 - by, self.x1 + by, self.y1 + by)

    def overlaps(self, other: Box) -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1

    def inside(self, other: Box) -> bool:
        return self.x0 >= other.x0 and self.y0 >= other.y0 and self.x1 <= other.x1 and self.y1 <= other.y1

    def nearest(self, x: float, y: float) -> tuple[float, float]:
        return min(max(x, self.x0), self.x1), min(max(y, self.y0), self.y1)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2


Segment = tuple[tuple[float, float], tuple[float, float]]


def length_inside(box: Box, segment: Segment) -> float:
    """How much of the segment lies inside the box (Liang-Barsky clipping)."""
    (ax, ay), (bx, by) = segment
    dx, dy = bx - ax, by - ay
    low, high = 0.0, 1.0
    for p, q in ((-dx, ax - box.x0), (dx, box.x1 - ax), (-dy, ay - box.y0), (dy, box.y1 - ay)):
        if p == 0:
            if q < 0:
                return 0.0
            continue
        t = q / p
        if p < 0:
            low = max(low, t)
        else:
            high = min(high, t)
        if low > high:
            return 0.0
    return (high - low) * math.hypot(dx, dy)


@dataclass(frozen=True)
class PointLabel:
    """A label to put beside the data point (x, y); `rank` orders names inside a combined label."""

    text: str
    x: float
    y: float
    style: dict[str, Any] = field(default_factory=dict)  # matplotlib text properties (fontsize, color)
    rank: int = 0


@dataclass(frozen=True)
class Obstacles:
    hard: list[Box]  # never covered: markers, the legend
    lines: list[Segment]  # crossed at a cost: error bars, curves


def combined_text(parts: Sequence[Sequence[str]], wrap: int = WRAP_CHARS) -> str:
    """One label for points drawn at one spot: the names of points with equal scores joined by ' = ', such
    groups (scores that differ by less than the eye sees) by ' ≈ '; wrapped at a separator past `wrap`
    characters. A name that holds '=' itself (α=1) is put in parentheses, so the separators stay readable."""
    several = sum(len(part) for part in parts) > 1
    tokens = [(" = " if j else " ≈ ", f"({name})" if several and "=" in name else name)
              for part in parts for j, name in enumerate(part)]
    lines: list[str] = []
    for separator, name in tokens:
        if lines and len(lines[-1]) + len(separator) + len(name) <= wrap:
            lines[-1] += separator + name
        elif lines:
            lines[-1] += separator.rstrip()
            lines.append(name)
        else:
            lines.append(name)
    return "\n".join(lines)


def equal_parts(group: Sequence[int], points: Sequence[tuple[float, float]]) -> list[list[int]]:
    """The group's members split into runs of equal coordinates (to rounding), in the group's order."""
    def same(i: int, j: int) -> bool:
        return all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
                   for a, b in zip(points[i], points[j], strict=True))

    parts: list[list[int]] = []
    for i in group:
        part = next((part for part in parts if same(part[0], i)), None)
        if part is None:
            parts.append([i])
        else:
            part.append(i)
    return parts


def group_coincident(anchors: Sequence[tuple[float, float]],
                     tolerance: float = COINCIDENT_PX) -> list[list[int]]:
    """Indices of anchors (pixels) grouped with every anchor within `tolerance` of a member, in input
    order."""
    groups: list[list[int]] = []
    for i, (x, y) in enumerate(anchors):
        near = [g for g in groups
                if any(math.hypot(anchors[j][0] - x, anchors[j][1] - y) <= tolerance for j in g)]
        merged = [i] + [j for g in near for j in g]
        groups = [g for g in groups if g not in near] + [sorted(merged)]
    return sorted(groups, key=lambda g: g[0])


def _candidates(x: float, y: float, width: float, height: float, clear: float) -> Iterator[tuple[float, Box]]:
    """Boxes around (x, y), nearest first: sides and corners, more directions farther out."""
    for radius in RADII_PX:
        steps = 8 if radius < 20 else 16
        for k in range(steps):
            angle = 2 * math.pi * k / steps
            cx, cy = math.cos(angle), math.sin(angle)
            # Put the box's near side `radius` beyond the marker, in the direction of the angle.
            scale = 1.0 / max(abs(cx), abs(cy))
            ux, uy = cx * scale, cy * scale  # on the unit square: sides at 0/90/.., corners at 45/135/..
            center_x = x + ux * (clear + radius + width / 2)
            center_y = y + uy * (clear + radius + height / 2)
            yield radius, Box(center_x - width / 2, center_y - height / 2,
                              center_x + width / 2, center_y + height / 2)


def needs_leader(x: float, y: float, box: Box, clear: float) -> bool:
    """Whether the box sits so far from its point (beyond the marker) that a line must join them."""
    near_x, near_y = box.nearest(x, y)
    return math.hypot(near_x - x, near_y - y) > LEADER_PX + clear


def segments_cross(a: Segment, b: Segment) -> bool:
    """Whether two segments cross at a point inside both."""

    def side(p: tuple[float, float], q: tuple[float, float], r: tuple[float, float]) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    return (side(b[0], b[1], a[0]) * side(b[0], b[1], a[1]) < 0
            and side(a[0], a[1], b[0]) * side(a[0], a[1], b[1]) < 0)


@dataclass
class Placed:
    """What the labels placed so far occupy: their boxes and leader lines."""

    boxes: list[Box] = field(default_factory=list)
    leaders: list[Segment] = field(default_factory=list)


def _leader_cost(x: float, y: float, box: Box, placed: Placed, obstacles: Obstacles) -> float:
    """A leader runs from the box's middle to the point: it should cross no label, leader or other marker."""
    leader = ((x, y), box.center)
    crossings = sum(1 for b in placed.boxes if length_inside(b, leader) > 0)
    crossings += sum(1 for other in placed.leaders if segments_cross(leader, other))
    markers = sum(1 for h in obstacles.hard
                  if not (h.x0 <= x <= h.x1 and h.y0 <= y <= h.y1) and length_inside(h, leader) > 0)
    return LEADER_PX + LEADER_CROSSING_COST * (crossings + markers / 2)


def ambiguous(x: float, y: float, box: Box, others: Sequence[tuple[float, float]]) -> bool:
    """Whether another point is nearer to the box than its own: then only a leader says whose label it is."""

    def gap(px: float, py: float) -> float:
        near_x, near_y = box.nearest(px, py)
        return math.hypot(near_x - px, near_y - py)

    own = gap(x, y)
    return any(gap(ox, oy) < own for ox, oy in others)


def place_one(x: float, y: float, size: tuple[float, float], clear: float, bounds: Box, placed: Placed,
              obstacles: Obstacles, others: Sequence[tuple[float, float]] = ()) -> tuple[Box, bool]:
    """The cheapest free box of `size` near (x, y), and whether it needs a leader line; if no box is
    free, the one overlapping least."""
    width, height = size
    best: tuple[tuple[int, float], Box, bool] | None = None
    for radius, box in _candidates(x, y, width, height, clear):
        spaced = box.grown(GAP_PX)
        violations = (0 if spaced.inside(bounds) else 4) + sum(2 for p in placed.boxes if spaced.overlaps(p))
        violations += sum(1 for h in obstacles.hard if box.overlaps(h))
        cost = radius + LINE_COST * sum(length_inside(box, s) for s in obstacles.lines)
        leader = needs_leader(x, y, box, clear) or ambiguous(x, y, box, others)
        if leader:
            cost += _leader_cost(x, y, box, placed, obstacles)
        if best is None or (violations, cost) < best[0]:
            best = (violations, cost), box, leader
    assert best is not None
    return best[1], best[2]


def layout(anchors: Sequence[tuple[float, float]], sizes: Sequence[tuple[float, float]],
           clear: Sequence[float], bounds: Box, obstacles: Obstacles) -> list[tuple[Box, bool]]:
    """A box for each label and whether it needs a leader line, placed greedily: the labels in the most
    crowded places go first."""

    def crowd(i: int) -> int:
        return sum(1 for j, (x, y) in enumerate(anchors)
                   if j != i and math.hypot(x - anchors[i][0], y - anchors[i][1]) < 60)

    placements: dict[int, tuple[Box, bool]] = {}
    placed = Placed()
    for i in sorted(range(len(anchors)), key=lambda i: (-crowd(i), i)):
        x, y = anchors[i]
        others = [a for j, a in enumerate(anchors) if j != i]
        box, leader = placements[i] = place_one(x, y, sizes[i], clear[i], bounds, placed, obstacles, others)
        placed.boxes.append(box)
        if leader:
            placed.leaders.append(((x, y), box.center))
    return [placements[i] for i in range(len(anchors))]


# A white backing so a label stays readable where an error bar or curve runs under it.
LABEL_BACKING = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85}


def _drawn(fig: Any) -> Any:
    """Lay the figure out and draw it once (Agg); return the renderer that measured it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _box(extent: Any) -> Box:
    return Box(float(extent.x0), float(extent.y0), float(extent.x1), float(extent.y1))


def _freeze_legend(ax: Any, renderer: Any) -> Box | None:
    """Pin the legend where 'best' put it, so that the labels added now do not move it; return its box."""
    legend = ax.get_legend()
    if legend is None:
        return None
    box = _box(legend.get_window_extent(renderer))
    legend.set_loc(tuple(float(v) for v in ax.transAxes.inverted().transform((box.x0, box.y0))))
    return box


def _obstacles(ax: Any, legend: Box | None) -> Obstacles:
    """Markers (and the legend) as boxes not to cover; drawn lines and error bars as segments."""
    hard, lines = ([legend] if legend else []), []
    for line in ax.get_lines():
        xy = np.asarray(line.get_transform().transform(line.get_xydata()), dtype=float)
        xy = xy[np.isfinite(xy).all(axis=1)]
        if line.get_linestyle() not in ("None", "none", "", " "):
            lines.extend((tuple(a), tuple(b)) for a, b in zip(xy[:-1], xy[1:], strict=True))
        if line.get_marker() not in _SOFT_MARKERS:
            r = line.get_markersize() * ax.figure.dpi / 72 / 2 + line.get_markeredgewidth()
            hard.extend(Box(x - r, y - r, x + r, y + r) for x, y in xy)
    for collection in ax.collections:  # error bars are LineCollections
        transform = collection.get_transform()
        for path in collection.get_paths():
            xy = transform.transform(path.vertices)
            lines.extend((tuple(a), tuple(b)) for a, b in zip(xy[:-1], xy[1:], strict=True))
    return Obstacles(hard, lines)


def _measure(ax: Any, renderer: Any, text: str, style: dict[str, Any]) -> tuple[float, float]:
    probe = ax.annotate(text, (0, 0), ha="center", va="center", bbox=LABEL_BACKING, annotation_clip=False,
                        **style)
    extent = probe.get_window_extent(renderer)
    probe.remove()
    return float(extent.width), float(extent.height)


def label_points(fig: Any, ax: Any, labels: Sequence[PointLabel], clear_pt: float = 4.0) -> list[Any]:
    """Draw the labels without overlaps (call last: it lays the figure out and pins the legend); points at
    the same spot get one label naming them all (see `combined_text`), in `rank` order. Returns the drawn
    annotations."""
    if not labels:
        return []
    renderer = _drawn(fig)
    obstacles = _obstacles(ax, _freeze_legend(ax, renderer))
    to_px = fig.dpi / 72
    anchors = [tuple(float(v) for v in ax.transData.transform((p.x, p.y))) for p in labels]
    groups = [sorted(g, key=lambda i: (labels[i].rank, i)) for g in group_coincident(anchors)]
    data = [(p.x, p.y) for p in labels]
    texts = [combined_text([[labels[i].text for i in part] for part in equal_parts(g, data)]) for g in groups]
    styles = [labels[g[0]].style for g in groups]
    sizes = [_measure(ax, renderer, text, style) for text, style in zip(texts, styles, strict=True)]
    points = [anchors[g[0]] for g in groups]
    bounds = _box(ax.get_window_extent(renderer))
    placements = layout(points, sizes, [clear_pt * to_px] * len(groups), bounds, obstacles)
    drawn = []
    for (x, y), (box, leader), text, style, g in zip(points, placements, texts, styles, groups, strict=True):
        arrow = ({"arrowstyle": "-", "color": style.get("color", "black"), "linewidth": 0.6, "shrinkA": 0,
                  "shrinkB": clear_pt} if leader else None)
        center_x, center_y = box.center
        offset = (center_x - x) / to_px, (center_y - y) / to_px
        p = labels[g[0]]
        annotation = ax.annotate(text, (p.x, p.y), xytext=offset, textcoords="offset points", ha="center",
                                 va="center", bbox=LABEL_BACKING, arrowprops=arrow, annotation_clip=False,
                                 **style)
        annotation.set_in_layout(False)
        drawn.append(annotation)
    return drawn
