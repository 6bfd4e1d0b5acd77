"""The leaderboard: one self-contained static HTML page (sortable tables, embedded figures, a
significance matrix per benchmark, each row's provenance) plus the tables as md/LaTeX/CSV and the
figures as PNG + PDF, written into one directory that replaces the previous report atomically.
"""

from __future__ import annotations

import base64
import html
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from harness import __version__
from harness.atomic import atomic_dir
from harness.config import Experiment
from harness.errors import UserError
from harness.report.assets import CSS, JS
from harness.report.from_store import TableOptions, build_tables
from harness.report.render import to_csv, to_html, to_latex, to_markdown
from harness.report.table import Table
from harness.report.tax_figure import tax_chart, tax_panels
from harness.stats.compare import cell_test
from harness.stats.corrections import adjust
from harness.stats.joins import primary_runs
from harness.store import ResultsStore

MARKER = ".atax-report"  # marks a directory as ours, so --out never replaces someone else's files


@dataclass
class ReportOptions:
    experiment: str | None = None
    reference_method: str | None = "vanilla"  # used when the store has such a row
    include_reference: Sequence[str] = ()
    reference_dir: Path | None = None
    correction: str = "holm"
    alpha: float = 0.05
    title: str = "atax leaderboard"
    sweep: Experiment | None = None  # an experiment with a sweep section: its figure joins the page


@dataclass
class ReportOutput:
    index: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def write_report(results_dir: Path, out: Path, options: ReportOptions | None = None) -> ReportOutput:
    """Build every table and figure from the store at `results_dir` and write the report into `out`."""
    options = options or ReportOptions()
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        raise UserError(f"--out {out}: exists and is not an atax report directory; give a new or empty directory")
    with ResultsStore.open(results_dir) as store, store.snapshot():
        tables = _tables(store, options)
        with atomic_dir(out) as tmp:
            (tmp / MARKER).write_text("written by atax report\n", encoding="utf-8")
            sections, notes = _figures(store, tables, tmp, options)
            body = [_header(results_dir, options)]
            for table in tables:
                body.append(f"<h2>{html.escape(table.title or 'Results')}</h2>")
                body.append('<div class="scroll">' + to_html(table, table_id=f"table-{table.layout}", caption=False)
                            + "</div>")
                _write_table_files(table, tmp / "tables", table.layout)
            body += sections
            body.append(_matrices(store, tables, options))
            body.append(_provenance(store, tables))
            (tmp / "index.html").write_text(_page(options.title, body), encoding="utf-8")
            files = sorted(p.relative_to(tmp) for p in tmp.rglob("*") if p.is_file())
    return ReportOutput(out / "index.html", [out / f for f in files], notes)


def _tables(store: ResultsStore, options: ReportOptions) -> list[Table]:
    from harness.report.points import add_cis
    from harness.report.reference import add_reference_rows, load_reference

    names = {r.row for r in primary_runs(store, experiment=options.experiment)}
    reference = options.reference_method if options.reference_method in names else None
    tables = build_tables(store, TableOptions(experiment=options.experiment, reference_method=reference,
                                              correction=options.correction, alpha=options.alpha, show_std=True))
    for table in tables:
        add_cis(store, table)
    for name in options.include_reference:
        ref = load_reference(name, options.reference_dir)
        for table in tables:
            add_reference_rows(table, ref)
    return tables


def _write_table_files(table: Table, directory: Path, stem: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for suffix, render in (("md", to_markdown), ("tex", to_latex), ("csv", to_csv), ("html", to_html)):
        (directory / f"{stem}.{suffix}").write_text(render(table) + "\n", encoding="utf-8")


def _img(paths: list[Path], root: Path, caption: str) -> str:
    png = next(p for p in paths if p.suffix == ".png")
    pdf = next((p for p in paths if p.suffix == ".pdf"), None)
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    link = f' (<a href="{pdf.relative_to(root)}">PDF</a>)' if pdf else ""
    return (f'<div class="figure"><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<div>{html.escape(caption)}{link}</div></div>")


def _figures(store: ResultsStore, tables: list[Table], root: Path,
             options: ReportOptions) -> tuple[list[str], list[str]]:
    from harness.report.averaging_front import distance_section, mark_families
    from harness.report.figures import bar_chart, error_overlap_chart, k_curve, tax_curve, wrong_count_chart
    from harness.report.frontier import frontier_chart
    from harness.report.points import bar_panels, frontier_points, k_points, size_points, submodel_analyses

    figures = root / "figures"
    html_parts = ["<h2>Figures</h2>"]
    notes: list[str] = []
    for index, table in enumerate(tables):
        paths = bar_chart(bar_panels(table), figures / f"scores-{table.layout}-{index}", title=table.title)
        html_parts.append(_img(paths, root, f"{table.title}: scores with 95% confidence intervals"))
    by_layout = {t.layout: t for t in tables}
    knowledge, instruction = by_layout.get("knowledge"), by_layout.get("instruction")
    if knowledge and instruction:
        points = mark_families(store, frontier_points(instruction, knowledge), knowledge)
        if points:
            paths, losers = frontier_chart(points, figures / "frontier", xlabel="instruction following (judge score)",
                                           ylabel="mean knowledge score (%)")
            caption = ("Trade-off frontier; the grey line is scaled vanilla over α, triangles are layer averaging "
                       "(α per block of layers), dashed: the averaging front. Dominated (below it): "
                       + (", ".join(losers) or "none"))
            html_parts.append(_img(paths, root, caption))
            html_parts.append(distance_section(store, points, knowledge, root))
    else:
        notes.append("no trade-off frontier: it needs knowledge and instruction-following scores")
    if knowledge:
        deltas = tax_panels(store, knowledge)
        if deltas:
            caption = ("Alignment tax: each method's knowledge score minus the base model's, with paired 95% "
                       "bootstrap intervals on the shared items (left of 0: knowledge lost)")
            html_parts.append(_img(tax_chart(deltas, figures / "alignment-tax"), root, caption))
        else:
            notes.append("no alignment-tax figure: it needs the base model's knowledge scores (a base row)")
        sizes = size_points(store, knowledge)
        if sizes:
            html_parts.append(_img(tax_curve(sizes, figures / "alignment-tax-curve"), root,
                                   "Alignment-tax curve: mean knowledge score vs. instruction examples"))
        ks = k_points(store, knowledge)
        if ks:
            html_parts.append(_img(k_curve(ks, figures / "score-vs-k", ylabel="score (%)"), root, "Score vs. K"))
    if options.sweep is not None:
        from harness.analyze.sweep_figure import draw_sweep

        drawn = draw_sweep(store, options.sweep, root)
        if drawn["figure"]:
            html_parts.append(_img([Path(p) for p in drawn["figure"]], root,
                                   "Score vs. amount of instruction data, per benchmark (95% bands)"))
        else:
            notes.append(f"no data-size sweep figure: {drawn['note']}")
    for n, analysis in enumerate(submodel_analyses(store, options.experiment)):
        stem = figures / f"submodels-{n}"
        title = f"{analysis.merged} on {analysis.benchmark}"
        html_parts.append(_img(error_overlap_chart(analysis.overlap, stem.with_name(stem.name + "-overlap"),
                                                   title=f"Error-set overlap of sub-models: {title}"), root,
                               f"Error-set overlap of the sub-models of {title} (Figure 8 style)"))
        html_parts.append(_img(wrong_count_chart(analysis.bins, stem.with_name(stem.name + "-by-errors"),
                                                 title=f"Merged accuracy by sub-model errors: {title}"), root,
                               f"Merged accuracy by number of sub-models wrong, {title} (Figure 9 style)"))
    if notes:
        html_parts.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    return html_parts, notes


def _matrices(store: ResultsStore, tables: list[Table], options: ReportOptions) -> str:
    """Per benchmark: every pair of methods, the table's test (see harness.stats.compare), Holm across
    the pairs. Shown compactly: the pairs that differ significantly, with the full matrix folded
    away (a 12x12 matrix per benchmark would be most of the page and wider than it)."""
    parts = ["<h2>Significance per benchmark</h2>",
             f'<p class="meta">Pairs whose difference is significant (alpha = {options.alpha:g}, '
             f"{options.correction} correction across the pairs of each benchmark): McNemar's exact test for 0/1 "
             "items, Wilcoxon signed-rank for graded items, Welch's t on seed scores where both have >= 3 seeds. "
             "Open a benchmark's matrix for every pair's adjusted p-value.</p>"]
    for table in tables:
        for column in table.columns:
            rows = [r for r in table.rows if not r.reference and r.provenance.get("runs", {}).get(column.key)]
            if len(rows) < 2:
                continue
            pairs, ps, failures = [], [], []
            for a, b in itertools.combinations(rows, 2):
                try:
                    verdict = cell_test(store, a.provenance["runs"][column.key], b.provenance["runs"][column.key])
                except UserError as exc:
                    failures.append(f"{a.name} vs {b.name}: {exc}")
                    continue
                pairs.append((a, b))
                ps.append(verdict.p_value)
            adjusted = dict(zip([(a.name, b.name) for a, b in pairs], adjust(ps, options.correction), strict=True)) \
                if ps else {}
            parts.append(f"<h3>{html.escape(column.label)}</h3>")
            parts.append(_significant_pairs(pairs, adjusted, column.key, column.lower_is_better, options.alpha))
            parts.append(f"<details><summary>all {len(pairs)} pairs</summary><div class=\"scroll\">"
                         f"{_matrix(rows, column.key, column.lower_is_better, adjusted, options.alpha)}</div></details>")
            if failures:
                parts.append('<ul class="notes">' + "".join(f"<li>{html.escape(f)}</li>" for f in failures) + "</ul>")
    return "\n".join(parts)


def _significant_pairs(pairs: list, adjusted: dict[tuple[str, str], float], key: str, lower_is_better: bool,
                       alpha: float) -> str:
    found = []
    for a, b in pairs:
        p, va, vb = adjusted[(a.name, b.name)], a.cell(key).value, b.cell(key).value
        if p > alpha or va is None or vb is None or va == vb:
            continue
        winner, loser = (a, b) if (va > vb) != lower_is_better else (b, a)
        found.append(f"<li><b>{html.escape(winner.name)}</b> &gt; {html.escape(loser.name)} "
                     f"(adjusted p = {p:.3g})</li>")
    if not found:
        return f'<p class="meta">No pair differs significantly ({len(pairs)} pairs tested).</p>'
    return f'<ul class="pairs">{"".join(found)}</ul>'


def _matrix(rows: list, key: str, lower_is_better: bool, adjusted: dict[tuple[str, str], float], alpha: float) -> str:
    head = "".join(f"<th>{html.escape(r.name)}</th>" for r in rows)
    lines = [f'<table class="matrix"><thead><tr><th></th>{head}</tr></thead><tbody>']
    for a in rows:
        cells = []
        for b in rows:
            if a is b:
                cells.append('<td class="self">–</td>')
                continue
            p = adjusted.get((a.name, b.name), adjusted.get((b.name, a.name)))
            if p is None:
                cells.append("<td>n/a</td>")
                continue
            va, vb = a.cell(key).value, b.cell(key).value
            better = va is not None and vb is not None and (va > vb) != lower_is_better and va != vb
            kind = ("better" if better else "worse") if p <= alpha and va != vb else ""
            cells.append(f'<td class="{kind}">{p:.3g}</td>')
        lines.append(f'<tr><th scope="row">{html.escape(a.name)}</th>{"".join(cells)}</tr>')
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _provenance(store: ResultsStore, tables: list[Table]) -> str:
    from harness.report.provenance import row_provenance

    seen: dict[str, dict[str, str]] = {}
    for table in tables:
        for row in table.rows:
            if row.reference or row.name in seen:
                continue
            runs = [r for rs in row.provenance.get("runs", {}).values() for r in rs]
            runs += [r for t in tables for other in t.rows if other.name == row.name and other is not row
                     for rs in other.provenance.get("runs", {}).values() for r in rs]
            seen[row.name] = row_provenance(store, runs)
    if not seen:
        return ""
    fields = list(next(iter(seen.values())))
    head = '<th data-col="Method">Method</th>' + "".join(f'<th data-col="{html.escape(f)}">{html.escape(f)}</th>'
                                                        for f in fields)
    body = "".join(f'<tr><th scope="row">{html.escape(name)}</th>'
                   + "".join(f"<td>{html.escape(info[f])}</td>" for f in fields) + "</tr>"
                   for name, info in seen.items())
    references = sorted({r.source for t in tables for r in t.rows if r.reference and r.source})
    cited = "".join(f"<li>{html.escape(s)}</li>" for s in references)
    return ("<h2>Provenance</h2>"
            f'<div class="scroll"><table class="provenance sortable"><thead><tr>{head}</tr></thead><tbody>{body}'
            "</tbody></table></div>"
            + (f'<p class="meta">Reference rows (italic) are reported numbers from:</p><ul class="notes">{cited}</ul>'
               if cited else ""))


def _header(results_dir: Path, options: ReportOptions) -> str:
    # SOURCE_DATE_EPOCH (the reproducible-builds convention) fixes the stamp, so a published report can be
    # regenerated byte for byte from its store.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    stamp = when.strftime("%Y-%m-%d %H:%M UTC")
    scope = f", experiment <code>{html.escape(options.experiment)}</code>" if options.experiment else ""
    return (f"<h1>{html.escape(options.title)}</h1>"
            f'<p class="meta">From <code>{html.escape(str(results_dir))}</code>{scope}; atax {__version__}; '
            f"generated {stamp}. Sort a table by clicking a column, or open this page with "
            "<code>?sort=COLUMN&amp;dir=desc</code>.</p>")


def _page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body) + f"\n<script>{JS}</script>\n</body></html>\n")
