"""Tables as markdown, LaTeX (booktabs), CSV and HTML, in the paper's style: best bold, second
underlined, an arrow for "significantly better/worse than the reference method", optional ± std,
"–" for a missing cell, reference rows (numbers from papers) set apart in italics.
"""

from __future__ import annotations

import csv
import html
import io

from harness.errors import UserError
from harness.report.table import MISSING, PARTIAL_MARK, Cell, Column, Row, Table, ranking

FORMATS: tuple[str, ...] = ("md", "latex", "csv", "html")
_ARROWS = {"better": "↑", "worse": "↓"}
_LATEX_ARROWS = {"better": r"$^{\uparrow}$", "worse": r"$^{\downarrow}$"}
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def number(value: float, column: Column) -> str:
    return f"{value:.{column.decimals}f}"


def _plain(cell: Cell, column: Column, show_std: bool) -> str:
    if cell.value is None:
        return MISSING
    text = number(cell.value, column) + (PARTIAL_MARK if cell.partial else "")
    return text + (f" ± {number(cell.std, column)}" if show_std and cell.std is not None else "")


def render(table: Table, fmt: str) -> str:
    """`table` in `fmt` (md, latex, csv, html)."""
    renderers = {"md": to_markdown, "markdown": to_markdown, "latex": to_latex, "tex": to_latex, "csv": to_csv,
                 "html": to_html}
    if fmt not in renderers:
        raise UserError(f"--format: unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    return renderers[fmt](table)


def legend(table: Table) -> list[str]:
    """The lines under a table: what the marks mean, then which runs are missing."""
    lines = []
    if any(row.ranked and not row.reference for row in table.rows):
        lines.append("Best per column in bold, second underlined (ties share the mark)"
                     + ("; reference rows are reported numbers, not ranked or tested." if
                        any(r.reference for r in table.rows) else "."))
    if table.significance_note:
        lines.append(table.significance_note)
    return lines + table.notes


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(table: Table) -> str:
    marks = ranking(table)
    lines = []
    if table.title:
        lines += [f"**{_md_escape(table.title)}**", ""]
    lines.append("| Method | " + " | ".join(_md_escape(c.label) for c in table.columns) + " |")
    lines.append("|:---|" + "---:|" * len(table.columns))
    for i, row in enumerate(table.rows):
        cells = []
        for column in table.columns:
            cell = row.cell(column.key)
            text = _plain(cell, column, table.show_std)
            mark = marks.get((i, column.key))
            if mark == "best":
                text = f"**{text}**"
            elif mark == "second":
                text = f"<u>{text}</u>"
            cells.append(text + _ARROWS.get(cell.significance or "", ""))
        name = f"*{_md_escape(row.name)}*" if row.reference else _md_escape(row.name)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    notes = legend(table)
    return "\n".join(lines + ([""] + notes if notes else []))


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    marks = ranking(table)
    lines = [r"% requires \usepackage{booktabs}"]
    lines += [f"% {latex_escape(note)}" for note in legend(table)]
    lines += [r"\begin{tabular}{l" + "c" * len(table.columns) + "}", r"\toprule",
              "Method & " + " & ".join(latex_escape(c.label) for c in table.columns) + r" \\", r"\midrule"]
    previous_reference = False
    for i, row in enumerate(table.rows):
        if row.reference and not previous_reference and i > 0:
            lines.append(r"\midrule")
        previous_reference = row.reference
        cells = []
        for column in table.columns:
            cell = row.cell(column.key)
            text = _plain(cell, column, table.show_std).replace("±", r"$\pm$")
            mark = marks.get((i, column.key))
            if mark == "best":
                text = rf"\textbf{{{text}}}"
            elif mark == "second":
                text = rf"\underline{{{text}}}"
            cells.append(text + _LATEX_ARROWS.get(cell.significance or "", ""))
        name = rf"\textit{{{latex_escape(row.name)}}}" if row.reference else latex_escape(row.name)
        lines.append(f"{name} & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def to_csv(table: Table) -> str:
    """One line per row: the displayed numbers, then per column its std (with --std) and its mark
    (best / second, better / worse), so a spreadsheet keeps everything the other formats show."""
    marks = ranking(table)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["row", "kind"]
    for column in table.columns:
        header += [column.label] + ([f"{column.label} std"] if table.show_std else []) + [f"{column.label} mark"]
    writer.writerow(header)
    for i, row in enumerate(table.rows):
        line = [row.name, "reference" if row.reference else "method"]
        for column in table.columns:
            cell = row.cell(column.key)
            line.append("" if cell.value is None else number(cell.value, column))
            if table.show_std:
                line.append("" if cell.std is None else number(cell.std, column))
            line.append(" ".join(m for m in (marks.get((i, column.key)), cell.significance,
                                             "partial" if cell.partial else None) if m))
        writer.writerow(line)
    return out.getvalue()


def html_cell(row: Row, index: int, column: Column, marks: dict[tuple[int, str], str], show_std: bool) -> str:
    """One `<td>`; `data-value` carries the raw number so the page's JS sorts numerically."""
    cell = row.cell(column.key)
    text = html.escape(_plain(cell, column, show_std))
    mark = marks.get((index, column.key))
    if mark == "best":
        text = f"<b>{text}</b>"
    elif mark == "second":
        text = f"<u>{text}</u>"
    if cell.significance:
        title = f"{cell.significance} than the reference method, adjusted p = {cell.p_value:.3g} ({cell.test})"
        text += f'<span class="sig" title="{html.escape(title)}">{_ARROWS[cell.significance]}</span>'
    value = "" if cell.value is None else repr(cell.value)
    return f'<td data-value="{value}">{text}</td>'


def to_html(table: Table, table_id: str = "", caption: bool = True) -> str:
    """A `<table>` (own rows in one tbody, reference rows in a second one that sorting leaves alone)."""
    marks = ranking(table)
    ident = f' id="{html.escape(table_id)}"' if table_id else ""
    lines = [f'<table class="atax-table sortable"{ident}>']
    if table.title and caption:
        lines.append(f"<caption>{html.escape(table.title)}</caption>")
    lines.append('<thead><tr><th data-col="Method">Method</th>'
                 + "".join(f'<th data-col="{html.escape(c.label)}">{html.escape(c.label)}</th>' for c in table.columns)
                 + "</tr></thead>")
    for reference in (False, True):
        body = [(i, row) for i, row in enumerate(table.rows) if row.reference == reference]
        if not body:
            continue
        lines.append('<tbody class="reference">' if reference else '<tbody class="methods">')
        for i, row in body:
            title = f' title="{html.escape(row.source)}"' if row.source else ""
            name = f"<i>{html.escape(row.name)}</i>" if reference else html.escape(row.name)
            cells = "".join(html_cell(row, i, column, marks, table.show_std) for column in table.columns)
            lines.append(f'<tr data-row="{html.escape(row.name)}"><th scope="row"{title}>{name}</th>{cells}</tr>')
        lines.append("</tbody>")
    lines.append("</table>")
    notes = legend(table)
    if notes:
        lines.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    return "\n".join(lines)
