"""Pre-training text for Replay and EWC: a built-in, a local .txt/.jsonl/.json/.parquet file, or a
hub dataset (streamed, so a sample of a terabyte corpus costs only the sample)."""

from __future__ import annotations

import random
from pathlib import Path

from harness.builtin import resolve_builtin
from harness.data.loading import read_file_rows
from harness.data.records import TextRecord
from harness.errors import UserError
from harness.sources import classify

TEXT_SUFFIXES = (".txt", ".jsonl", ".json", ".parquet")


def load_corpus(source: str, n_docs: int, seed: int = 0, base_dir: Path = Path("."), field: str = "text",
                min_chars: int = 20) -> list[TextRecord]:
    """Up to `n_docs` documents (seeded sample of the file; the first ones of a hub stream)."""
    kind = classify(source, base_dir)
    if kind.kind == "hub":
        return _hub_docs(source, n_docs, field, min_chars)
    path = resolve_builtin(source) if kind.kind == "builtin" else kind.path
    assert path is not None
    if not path.is_file():
        raise UserError(f"corpus: file '{path}' not found; give a .txt (one document per line), .jsonl/.json/.parquet "
                        "with a 'text' field, a hub dataset id or builtin:toy-corpus")
    if path.suffix not in TEXT_SUFFIXES:
        raise UserError(f"corpus: unsupported file type '{path.suffix}' for '{path}'; use {', '.join(TEXT_SUFFIXES)}")
    docs = _txt_docs(path) if path.suffix == ".txt" else _row_docs(path, field)
    docs = [d for d in docs if len(d.strip()) >= min_chars]
    if not docs:
        raise UserError(f"corpus: '{path}' has no document of at least {min_chars} characters")
    if len(docs) > n_docs:
        docs = random.Random(seed).sample(docs, n_docs)
    return [TextRecord(d) for d in docs]


def _txt_docs(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as exc:
        raise UserError(f"corpus: '{path}' is not UTF-8 (byte {exc.start}); re-encode it") from None


def _row_docs(path: Path, field: str) -> list[str]:
    docs = []
    for location, row in read_file_rows(path):
        if not isinstance(row, dict) or not isinstance(row.get(field), str):
            raise UserError(f"corpus: {path}: {location} has no string field '{field}'")
        docs.append(row[field])
    return docs


def _hub_docs(source: str, n_docs: int, field: str, min_chars: int) -> list[TextRecord]:
    import datasets

    from harness.hub import go_offline_if_unreachable

    go_offline_if_unreachable()
    try:
        stream = datasets.load_dataset(source, split="train", streaming=True)
        docs = []
        for row in stream:
            text = row.get(field)
            if isinstance(text, str) and len(text.strip()) >= min_chars:
                docs.append(TextRecord(text))
            if len(docs) >= n_docs:
                break
    except Exception as exc:  # the hub's errors are many; the user needs one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"corpus: cannot stream hub dataset '{source}' ({reason}); give a local file") from None
    return docs
