"""The table model every renderer draws: columns (benchmarks), rows (methods, seeds aggregated, and
reference rows from papers), cells with mean, spread and significance mark; and the paper's ranking
(best bold, second underlined, ties share the mark).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harness import registry
from harness.errors import UserError

MISSING = "–"  # en dash, as in the paper's tables
PARTIAL_MARK = "†"  # a cell scored on less than the official release; a footnote says what


@dataclass(frozen=True)
class Column:
    """A benchmark column. `key` is the store's benchmark name (or the JSON's column name);
    `scale` turns stored values into displayed ones (accuracy 0..1 -> percent: 100; None: decide
    from the data); ranking compares the displayed values, rounded to `decimals`."""

    key: str
    label: str
    lower_is_better: bool = False
    scale: float | None = None
    decimals: int = 2
    aliases: tuple[str, ...] = ()

    def matches(self, name: str) -> bool:
        wanted = normalize(name)
        return wanted in {normalize(self.key), normalize(self.label), *map(normalize, self.aliases)}


def normalize(name: str) -> str:
    """Benchmark names as people write them: "MT-bench", "mt_bench" and "mtbench" are one name."""
    return re.sub(r"[^a-z0-9@]", "", name.lower())


@dataclass(frozen=True)
class PaperTable:
    """A suite's share of a paper table: its columns under a layout (suites naming one layout, e.g.
    MT-bench and Vicuna-bench for "instruction", fill one table), in `position` order of the tables.
    A suite declares it as its `paper_table` class attribute; the report reads it through the registry."""

    layout: str
    title: str
    columns: tuple[Column, ...]
    position: int = 100


def paper_layouts() -> dict[str, tuple[str, tuple[Column, ...]]]:
    """layout -> (title, columns) from every registered suite's `paper_table`, tables in position order,
    columns in registry (name) order within a layout. A suite that cannot be loaded adds no columns."""
    declared: list[tuple[int, str, PaperTable]] = []
    for name in registry.suites.names():
        try:
            suite = registry.suites.get(name)
        except UserError:
            continue  # `atax suites` says why; a table still shows the other suites' columns
        tables = getattr(suite, "paper_table", None)
        for table in (tables if isinstance(tables, list | tuple) else [tables]):
            if isinstance(table, PaperTable):
                declared.append((table.position, name, table))
    layouts: dict[str, tuple[str, tuple[Column, ...]]] = {}
    for _, _, table in sorted(declared, key=lambda d: (d[0], d[1])):
        title, columns = layouts.get(table.layout, (table.title, ()))
        layouts[table.layout] = (title, columns + table.columns)
    return layouts


@dataclass
class Cell:
    value: float | None  # displayed units (after scale); None: missing
    std: float | None = None  # over seeds, displayed units
    n_seeds: int = 0
    significance: str | None = None  # "better" / "worse" than the reference method, after correction
    p_value: float | None = None  # adjusted
    test: str | None = None
    ci: tuple[float, float] | None = None  # 95% CI of the value, displayed units (figures)
    partial: str | None = None  # what data it was scored on when not the complete release (see data_notes)


@dataclass
class Row:
    name: str
    cells: dict[str, Cell]  # by column key
    reference: bool = False  # a number reported in a paper: never ranked, never tested
    ranked: bool = True
    source: str | None = None  # reference rows: the citation
    provenance: dict[str, Any] = field(default_factory=dict)

    def cell(self, key: str) -> Cell:
        return self.cells.get(key) or Cell(None)


@dataclass
class Table:
    columns: list[Column]
    rows: list[Row]
    title: str = ""
    notes: list[str] = field(default_factory=list)
    show_std: bool = False
    layout: str = "custom"
    significance_note: str | None = None  # the legend of the marks, when there are any

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.matches(name):
                return column
        raise UserError(f"unknown column {name!r}; columns: {', '.join(c.label for c in self.columns)}")

    def row(self, name: str) -> Row:
        for row in self.rows:
            if row.name == name:
                return row
        raise UserError(f"unknown row {name!r}; rows: {', '.join(r.name for r in self.rows)}")


def ranking(table: Table) -> dict[tuple[int, str], str]:
    """(row index, column key) -> "best" / "second" over the ranked rows, per column.

    Compared as displayed (rounded to the column's decimals), so equal-looking numbers tie, and tied
    cells share the mark (the paper bolds or underlines both); second is the next distinct value. A
    column where every ranked row ties gets no mark.
    """
    marks: dict[tuple[int, str], str] = {}
    for column in table.columns:
        shown = {i: round(row.cell(column.key).value, column.decimals)  # type: ignore[arg-type]
                 for i, row in enumerate(table.rows)
                 if row.ranked and not row.reference and row.cell(column.key).value is not None}
        distinct = sorted(set(shown.values()), reverse=not column.lower_is_better)
        if len(distinct) == 1 and len(shown) > 1:
            continue  # every ranked row ties: a column in bold says nothing (a toy GSM8K at 0 for all)
        for place, value in zip(("best", "second"), distinct, strict=False):
            marks.update({(i, column.key): place for i, v in shown.items() if v == value})
    return marks


def parse_columns(spec: str) -> list[Column]:
    """`--columns gsm8k=GSM8K,mmlu,mt_bench=MT-bench`: store benchmark names, optionally renamed."""
    columns = []
    known = {normalize(c.key): c for _, layout in paper_layouts().values() for c in layout}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        key, _, label = part.partition("=")
        default = known.get(normalize(key))
        if default is not None and not label:
            columns.append(default)
        else:
            columns.append(Column(key.strip(), label.strip() or key.strip(), scale=default.scale if default else None))
    if not columns:
        raise UserError(f"--columns: give comma-separated benchmark names, e.g. gsm8k,mmlu (got {spec!r})")
    return columns


def table_from_json(data: Any, where: str, table_name: str | None = None) -> Table:
    """A Table from `{"columns": [...], "rows": [{"row": name, "values": {col: value}}]}`, or from one
    entry of a `{"tables": {...}}` file (the reference format) chosen by `table_name`."""
    if isinstance(data, dict) and isinstance(data.get("tables"), dict):
        tables = data["tables"]
        if table_name is None and len(tables) == 1:
            table_name = next(iter(tables))
        if table_name not in tables:
            raise UserError(f"{where}: holds several tables; pick one with --table "
                            f"({', '.join(tables)})" if table_name is None
                            else f"{where}: no table {table_name!r}; tables: {', '.join(tables)}")
        data = tables[table_name]
        where = f"{where}: {table_name}"
    if not isinstance(data, dict) or not isinstance(data.get("columns"), list) or not isinstance(data.get("rows"), list):
        raise UserError(f'{where}: expected {{"columns": [...], "rows": [{{"row": ..., "values": {{...}}}}]}}')
    decimals = int(data.get("decimals", 2))
    columns = [Column(str(c), str(c), decimals=decimals) for c in data["columns"]]
    rows = []
    for index, entry in enumerate(data["rows"]):
        if not isinstance(entry, dict) or "row" not in entry or not isinstance(entry.get("values", {}), dict):
            raise UserError(f'{where}: rows[{index}] must be {{"row": name, "values": {{column: number}}}}')
        values = entry.get("values", {})
        unknown = [k for k in values if k not in data["columns"]]
        if unknown:
            raise UserError(f"{where}: rows[{index}] ({entry['row']}) has values for unknown column(s) "
                            f"{', '.join(map(str, unknown))}; add them to \"columns\"")
        cells = {}
        for key, value in values.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise UserError(f"{where}: rows[{index}] ({entry['row']}), column {key}: {value!r} is not a number")
            cells[key] = Cell(None if value is None else float(value), n_seeds=1)
        rows.append(Row(str(entry["row"]), cells))
    return Table(columns, rows, title=str(data.get("title", "")))


def apply_options(table: Table, exclude_from_ranking: Sequence[str] = (),
                  lower_is_better: Sequence[str] = ()) -> Table:
    """Take named rows out of the ranking and flip named columns; unknown names are user errors."""
    for name in exclude_from_ranking:
        table.row(name).ranked = False
    flipped = {table.column(name).key for name in lower_is_better}
    table.columns = [replace(c, lower_is_better=True) if c.key in flipped else c for c in table.columns]
    return table
