"""Each method against the model-averaging family (Lin et al. 2024): its distance to the averaging
front at its own instruction-following score (knowledge gained or lost), and a paired test against
the front's checkpoint nearest in instruction following, on the knowledge items both answered.

The front is the Pareto front of the family's points on the trade-off figure (base, the
scaled_vanilla α-curve, the layer_averaging points), linear between neighbours in x. The paired
difference is the mean over knowledge benchmarks of the per-item differences (each benchmark
weighted equally, as in the figure's mean), tested with a seeded paired bootstrap
(harness.stats.paired_bootstrap); p-values are corrected across the table's methods.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from harness.errors import UserError
from harness.report.frontier import (
    BASE,
    LAYER_AVERAGING,
    FrontierPoint,
    averaging_front,
    curve_height,
    is_averaging,
)
from harness.report.table import Table
from harness.stats import adjust, paired_bootstrap
from harness.stats.joins import paired_scores
from harness.store import ResultsStore

TEST_NAME = "paired bootstrap over knowledge items, benchmarks weighted equally"


@dataclass(frozen=True)
class FrontDistance:
    method: str
    x: float  # instruction following
    y: float  # mean knowledge
    front_y: float | None  # the front's knowledge at x; None outside its x-range
    matched: str  # the front's point nearest in x
    matched_x: float
    matched_y: float
    diff: float | None = None  # paired mean knowledge difference, method - matched (displayed units)
    ci: tuple[float, float] | None = None
    p_value: float | None = None  # corrected across the table's methods
    n_items: int = 0

    @property
    def distance(self) -> float | None:
        return None if self.front_y is None else self.y - self.front_y


@dataclass
class DistanceTable:
    rows: list[FrontDistance]
    front: list[FrontierPoint]
    notes: list[str] = field(default_factory=list)
    correction: str = "holm"


def mark_families(store: ResultsStore, points: Sequence[FrontierPoint], knowledge: Table) -> list[FrontierPoint]:
    """Points whose checkpoints layer_averaging wrote join the family, and so does the base model
    (every α 0) once the family has any point."""
    marked = []
    for point in points:
        row = next((r for r in knowledge.rows if r.name == point.method and not r.reference), None)
        runs = [run for runs in (row.provenance.get("runs", {}).values() if row else []) for run in runs]
        if any(_made_by_layer_averaging(store, run.checkpoint) for run in runs):
            point = replace(point, family=LAYER_AVERAGING)
        marked.append(point)
    if any(is_averaging(p) for p in marked):
        marked = [replace(p, family=BASE) if p.method == BASE and p.family is None else p for p in marked]
    return marked


def _made_by_layer_averaging(store: ResultsStore, key: str) -> bool:
    record = store.checkpoint(key)  # the manifest as written: layer_averaging records its search there
    return record is not None and LAYER_AVERAGING in (record.provenance or {})


def paired_difference(store: ResultsStore, knowledge: Table, a: str, b: str, n_resamples: int = 10000,
                      seed: int = 0) -> tuple[float, float, float, float, int, list[str]]:
    """(mean difference a - b, CI low, CI high, p, items, skipped benchmarks) over the knowledge columns
    both rows have item scores for; each benchmark's items weighted so that it counts once."""
    row_a, row_b = knowledge.row(a), knowledge.row(b)
    parts, skipped = [], []
    for column in knowledge.columns:
        runs_a, runs_b = row_a.provenance.get("runs", {}).get(column.key), row_b.provenance.get("runs", {}).get(column.key)
        if not runs_a or not runs_b:
            skipped.append(f"{column.label} (not evaluated on both)")
            continue
        try:
            scores = paired_scores(store, runs_a, runs_b)
        except UserError as exc:
            skipped.append(f"{column.label} ({exc})")
            continue
        parts.append((scores.x * (column.scale or 1.0), scores.y * (column.scale or 1.0)))
    if not parts:
        raise UserError(f"{a} and {b} share no scored knowledge items")
    total = sum(x.size for x, _ in parts)
    weights = [total / (len(parts) * x.size) for x, _ in parts]
    xs = np.concatenate([x * w for (x, _), w in zip(parts, weights, strict=True)])
    ys = np.concatenate([y * w for (_, y), w in zip(parts, weights, strict=True)])
    diff, low, high, p = paired_bootstrap(xs, ys, n_resamples=n_resamples, seed=seed)
    return diff, low, high, p, int(total), skipped


def front_distances(store: ResultsStore, points: Sequence[FrontierPoint], knowledge: Table,
                    correction: str = "holm", n_resamples: int = 10000, seed: int = 0) -> DistanceTable:
    """One row per method that is not a member of the averaging family (see the module docstring)."""
    front = averaging_front(points)
    table = DistanceTable([], front, correction=correction)
    if not front:
        table.notes.append("no averaging front: the store has no scaled_vanilla or layer_averaging scores")
        return table
    rows, raw_p = [], []
    for point in (p for p in points if not is_averaging(p)):
        matched = min(front, key=lambda q: (abs(q.x - point.x), -q.y))
        row = FrontDistance(point.method, point.x, point.y, curve_height(front, point.x), matched.method,
                            matched.x, matched.y)
        if row.front_y is None:
            table.notes.append(f"{point.method}: instruction following {point.x:.2f} is outside the front's range "
                               f"({front[0].x:.2f} to {front[-1].x:.2f}); no distance, the test is against "
                               f"{matched.method}")
        try:
            diff, low, high, p, n, skipped = paired_difference(store, knowledge, point.method, matched.method,
                                                               n_resamples, seed)
        except UserError as exc:
            table.notes.append(f"No paired test for {point.method} vs {matched.method}: {exc}")
            rows.append(row)
            continue
        table.notes += [f"{point.method} vs {matched.method}: left out {s}" for s in skipped]
        rows.append(replace(row, diff=diff, ci=(low, high), p_value=p, n_items=n))
        raw_p.append((len(rows) - 1, p))
    for (index, _), adjusted in zip(raw_p, adjust([p for _, p in raw_p], correction) if raw_p else [], strict=True):
        rows[index] = replace(rows[index], p_value=adjusted)
    table.rows = rows
    return table


HEADER = ("Method", "Instr.", "Knowl.", "Front knowl.", "Distance", "Matched point", "Matched instr.",
          "Matched knowl.", "Paired Δ", "95% CI", "p", "Items")
TEXT_COLUMNS = ("Method", "Matched point")


def _fmt(value: float | None, signed: bool = False) -> str:
    return "–" if value is None else (f"{value:+.2f}" if signed else f"{value:.2f}")


def _cells(row: FrontDistance) -> list[str]:
    ci = "–" if row.ci is None else f"[{row.ci[0]:+.2f}, {row.ci[1]:+.2f}]"
    p = "–" if row.p_value is None else f"{row.p_value:.3g}"
    return [row.method, _fmt(row.x), _fmt(row.y), _fmt(row.front_y), _fmt(row.distance, True), row.matched,
            _fmt(row.matched_x), _fmt(row.matched_y), _fmt(row.diff, True), ci, p, str(row.n_items or "–")]


def legend(table: DistanceTable) -> list[str]:
    members = ", ".join(p.method for p in table.front)
    return [f"Averaging front (Pareto points of base, scaled_vanilla and layer_averaging): {members}. Instr.: "
            "instruction-following score; Knowl.: mean knowledge score; Front knowl.: the front's, interpolated at "
            "the method's Instr.; Distance: Knowl. minus Front knowl. (positive: knowledge gained).",
            f"Paired Δ: method minus the matched point (the front's nearest in instruction following) on shared "
            f"knowledge items; {TEST_NAME}; p-values {table.correction}-corrected across the methods."] + table.notes


def to_markdown(table: DistanceTable) -> str:
    align = [":---" if h in TEXT_COLUMNS else "---:" for h in HEADER]
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |" for r in table.rows]
    return "\n".join(lines + [""] + legend(table))


def to_csv(table: DistanceTable) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(_cells(r) for r in table.rows)
    return out.getvalue()


def to_html(table: DistanceTable) -> str:
    head = "".join(f'<th data-col="{html.escape(h)}">{html.escape(h)}</th>' for h in HEADER)
    body = "".join("<tr>" + f'<th scope="row">{html.escape(cells[0])}</th>'
                   + "".join(f"<td>{html.escape(c)}</td>" for c in cells[1:]) + "</tr>"
                   for cells in (_cells(r) for r in table.rows))
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in legend(table))
    return (f'<div class="scroll"><table class="atax-table sortable" id="table-averaging-front"><thead><tr>{head}'
            f'</tr></thead><tbody>{body}</tbody></table></div><ul class="notes">{notes}</ul>')


def distance_section(store: ResultsStore, points: Sequence[FrontierPoint], knowledge: Table, root: Path) -> str:
    """The page's section (and tables/averaging-front.{md,csv,html}); empty without a front or methods."""
    table = front_distances(store, points, knowledge)
    if not table.front or not table.rows:
        return ""
    directory = root / "tables"
    directory.mkdir(parents=True, exist_ok=True)
    for suffix, render in (("md", to_markdown), ("csv", to_csv), ("html", to_html)):
        (directory / f"averaging-front.{suffix}").write_text(render(table) + "\n", encoding="utf-8")
    return "<h2>Distance to the model-averaging front</h2>\n" + '<div class="scroll">' + to_html(table) + "</div>"
