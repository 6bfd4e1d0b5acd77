"""Reference results: numbers reported in papers, kept in `results/reference/<id>.json`, shown in a
table as rows of their own (italic, cited, never ranked, never in a significance test).

A file is `{"id", "label", "source" (the citation), "tables": {name: {"layout"?, "caption"?,
"columns": [...], "rows": [{"row", "values"}]}}}`; values are in displayed units (percent).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.report.table import Cell, Row, Table

# The repository's own reference files (an editable install, or running from the checkout).
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "results" / "reference"


@dataclass(frozen=True)
class ReferenceSet:
    id: str
    label: str
    source: str
    tables: dict[str, dict[str, Any]]


def load_reference(name: str, reference_dir: Path | None = None) -> ReferenceSet:
    """`name` is an id in the reference directory (`fu2024`) or a path to such a JSON file."""
    directory = Path(reference_dir) if reference_dir is not None else REFERENCE_DIR
    path = Path(name) if name.endswith(".json") else directory / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.json")) if directory.is_dir() else []
        raise UserError(f"reference results {name!r}: no file {path}; "
                        f"known in {directory}: {', '.join(known) or 'none'} (or give a .json path)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not readable JSON ({exc}); fix or remove the file") from exc
    if not isinstance(data, dict) or not isinstance(data.get("tables"), dict) or not data.get("source"):
        raise UserError(f'{path}: a reference file needs "source" (the citation) and "tables"')
    return ReferenceSet(str(data.get("id", path.stem)), str(data.get("label", path.stem)), str(data["source"]),
                        data["tables"])


def _pick(reference: ReferenceSet, table: Table) -> dict[str, Any] | None:
    """The reference table for `table`: the one declared for its layout, else the best column overlap."""
    for entry in reference.tables.values():
        if entry.get("layout") == table.layout and table.layout != "custom":
            return entry
    best, overlap = None, 0
    for entry in reference.tables.values():
        shared = sum(1 for c in entry.get("columns", []) if any(col.matches(str(c)) for col in table.columns))
        if shared > overlap:
            best, overlap = entry, shared
    return best


def reference_rows(reference: ReferenceSet, table: Table) -> list[Row]:
    """`reference`'s rows for `table`'s columns (matched by name: "ARC-c" fills arc_challenge)."""
    entry = _pick(reference, table)
    if entry is None:
        return []
    rows = []
    for item in entry.get("rows", []):
        cells = {}
        for name, value in item.get("values", {}).items():
            column = next((c for c in table.columns if c.matches(str(name))), None)
            if column is not None and value is not None:
                cells[column.key] = Cell(float(value), n_seeds=1)
        if cells:
            rows.append(Row(f"{item['row']} [{reference.label}]", cells, reference=True, ranked=False,
                            source=reference.source))
    return rows


def add_reference_rows(table: Table, reference: ReferenceSet) -> Table:
    rows = reference_rows(reference, table)
    table.rows.extend(rows)
    if rows:
        table.notes.append(f"Rows marked [{reference.label}] are reported in: {reference.source}")
    return table
