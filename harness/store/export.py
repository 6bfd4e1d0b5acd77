"""Tables of the results store as pandas DataFrames and CSV files.

pandas is imported inside the functions so that opening the store (the CLI, every pipeline job)
does not pay for it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from harness.atomic import write_text_atomic
from harness.errors import UserError
from harness.store.connection import read_transaction

if TYPE_CHECKING:
    import pandas as pd

# Tables in dependency order, then the flat views. A closed list: the name is put into SQL text.
EXPORTED: tuple[str, ...] = (
    "experiments",
    "checkpoints",
    "eval_runs",
    "scores",
    "items",
    "curves",
    "jobs",
    "score_view",
    "item_view",
)

# Deterministic row order, so two exports of the same data give identical files.
_ORDER_BY = {
    "experiments": "id",
    "checkpoints": "key",
    "eval_runs": "id",
    "scores": "eval_id, metric",
    "items": "eval_id, item_id",
    "curves": "run_key, split, step",
    "jobs": "key",
    "score_view": "eval_id, metric",
    "item_view": "eval_id, item_id",
}


def to_dataframe(conn: sqlite3.Connection, table: str) -> pd.DataFrame:
    """All rows of `table` (one of EXPORTED), with its columns in schema order."""
    import pandas as pd

    if table not in EXPORTED:
        raise UserError(f"unknown results table {table!r}; choose one of: {', '.join(EXPORTED)}")
    cursor = conn.execute(f"SELECT * FROM {table} ORDER BY {_ORDER_BY[table]}")
    columns = [description[0] for description in cursor.description]
    # Built from tuples rather than pd.read_sql so that an empty table still has its columns.
    return pd.DataFrame.from_records(cursor.fetchall(), columns=columns)


def export_csv(conn: sqlite3.Connection, directory: Path) -> list[Path]:
    """Write `<directory>/<table>.csv` for every table and view, all from one snapshot."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    with read_transaction(conn):
        for table in EXPORTED:
            target = directory / f"{table}.csv"
            write_text_atomic(target, to_dataframe(conn, table).to_csv(index=False))
            written.append(target)
    return written
