"""JSON Lines files of objects (answers, questions, judge prompts, benchmark data), read with
one-line errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import UserError


def jsonl_objects(path: Path, expected: str = "a JSON object") -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) for every non-blank line; `expected` finishes the error for
    a line that is valid JSON but not an object ("expected a JSON object with ...")."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror}); check the path and its permissions") from None
    for line_no, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise UserError(f"{where}: not UTF-8 (byte {exc.start + 1} of the line); re-encode the file as UTF-8") \
                from None
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: not valid JSON ({exc.msg}); write one JSON object per line") from None
        if not isinstance(row, dict):
            raise UserError(f"{where}: expected {expected}")
        yield line_no, row
