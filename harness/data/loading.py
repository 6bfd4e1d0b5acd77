"""Load instruction data from a built-in, a local file or directory, or the hub, and normalise it.

Rows with an empty instruction or response are dropped and counted (never kept as `{}`);
every error names the file and the line or row.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.builtin import resolve_builtin
from harness.config.schema import DataConfig
from harness.data.formats import FORMATS, RowError, detect_format
from harness.data.records import InstructionRecord, fingerprint
from harness.errors import UserError
from harness.sources import classify

DATA_SUFFIXES = (".json", ".jsonl", ".parquet")


@dataclass(frozen=True)
class InstructionData:
    records: list[InstructionRecord]
    source: str
    format: str
    n_rows: int  # rows read
    n_dropped: int  # rows with an empty instruction or response
    fingerprint: str


def load_instruction_data(cfg: DataConfig, base_dir: Path = Path(".")) -> InstructionData:
    """Read, normalise, drop empty rows, then take the configured (seeded, nested) subset."""
    rows, where = _read_rows(cfg.source, cfg.split, base_dir)
    records: list[InstructionRecord] = []
    n_rows = 0
    fmt = None if cfg.format == "auto" else cfg.format
    for location, row in rows:
        n_rows += 1
        if not isinstance(row, Mapping):
            raise UserError(f"{where}: {location} is not a JSON object")
        if fmt is None:
            fmt = detect_format(row)
            if fmt is None:
                raise UserError(f"{where}: {location} has keys ({', '.join(map(str, row))}); expected Alpaca "
                                "(instruction, input, output), chat (messages), ShareGPT (conversations) or "
                                "Self-Instruct (instruction, instances); set data.format if it is one of them")
        try:
            record = FORMATS[fmt](row)
        except RowError as exc:
            raise UserError(f"{where}: {location}: {exc} (format {fmt})") from None
        if record.instruction.strip() and record.output.strip():
            records.append(record)
    if n_rows == 0:
        raise UserError(f"{where}: no rows; give a file with instruction data")
    if not records:
        raise UserError(f"{where}: all {n_rows} rows have an empty instruction or response; nothing to train on")
    selected = select_subset(records, cfg.data_fraction, cfg.max_samples, cfg.seed)
    return InstructionData(selected, cfg.source, fmt or "alpaca", n_rows, n_rows - len(records),
                           fingerprint(selected))


def select_subset(records: list[Any], fraction: float, max_samples: int | None, seed: int) -> list[Any]:
    """The first ceil(fraction * n) (at most max_samples) of a seeded permutation, in file order.

    Subsets for growing fractions with one seed are nested: each contains the smaller ones.
    """
    n = len(records)
    keep = min(n, math.ceil(fraction * n), max_samples or n)
    if keep == n:
        return list(records)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [records[i] for i in sorted(order[:keep])]


def _read_rows(ref: str, split: str, base_dir: Path) -> tuple[Iterator[tuple[str, Any]], str]:
    source = classify(ref, base_dir)
    if source.kind == "hub":
        return _hub_rows(ref, split), ref
    path = resolve_builtin(ref) if source.kind == "builtin" else source.path
    assert path is not None
    if not path.exists():
        raise UserError(f"{path}: file not found; give a JSON/JSONL/parquet file, a hub id or a builtin:")
    files = _data_files(path, split) if path.is_dir() else [path]
    return (row for file in files for row in read_file_rows(file)), str(path)


def _data_files(directory: Path, split: str) -> list[Path]:
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES)
    for_split = [p for p in files if split in p.name]
    if not (for_split or files):
        raise UserError(f"{directory}: no .json/.jsonl/.parquet file in this directory")
    return for_split or files


def read_file_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """(location, row) pairs of one local file; locations are 'line N' or 'row N', 1-based."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for index, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield f"row {index}", row
        return
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror}); check the path and its permissions") from exc
    if path.suffix == ".json" and data.lstrip()[:1] == b"[":
        yield from _json_array_rows(path, data)
        return
    yield from _jsonl_rows(path, data)


def _jsonl_rows(path: Path, data: bytes) -> Iterator[tuple[str, Any]]:
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: line {number} is not UTF-8 (byte {exc.start + 1}); "
                            "re-encode the file as UTF-8") from None
        try:
            yield f"line {number}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: line {number} is not valid JSON ({exc.msg} at column {exc.colno})") from None


def _json_array_rows(path: Path, data: bytes) -> Iterator[tuple[str, Any]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line} is not UTF-8 (byte {exc.start + 1} of the file); "
                        "re-encode the file as UTF-8") from None
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})") from None
    for index, row in enumerate(rows, start=1):
        yield f"row {index}", row


def _hub_rows(ref: str, split: str) -> Iterator[tuple[str, Any]]:
    import datasets

    from harness.hub import go_offline_if_unreachable

    go_offline_if_unreachable()
    try:
        dataset = datasets.load_dataset(ref, split=split)
    except Exception as exc:  # the hub's errors are many; the user needs one line and a way out
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"data.source: cannot load hub dataset '{ref}' split '{split}' ({reason}); "
                        "download it on a connected machine or give a local file") from None
    for index, row in enumerate(dataset, start=1):
        yield f"row {index}", row
