"""LLM-judge caches in the results store: judgments keyed by (judge model, prompt hash, repeat) and
model answers keyed by (target, suite, question, turn, generation-parameters hash).

Plain functions over a `ResultsStore` rather than more methods on it: only the judged suites use
these tables. Every write is its own transaction, so a run killed between two writes keeps all
that it had been answered.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from harness.store.connection import write_transaction

if TYPE_CHECKING:
    import sqlite3

    from harness.store.store import ResultsStore

# SQLite allows at most 999 bound parameters per statement in old builds; look-ups go in chunks.
_CHUNK = 500


@dataclass(frozen=True)
class Judgment:
    """One judge answer as cached: `prompt` is the request's messages as JSON, `score` None = missing."""

    judge_model: str
    prompt_hash: str
    repeat_index: int
    prompt: str
    response: str
    score: float | None


@dataclass(frozen=True)
class Generation:
    """One model answer to one turn of one question, under one set of generation parameters."""

    target_key: str
    suite: str
    question_id: str
    turn: int
    params_hash: str
    text: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _conn(store: ResultsStore) -> sqlite3.Connection:
    # The store's one connection, shared on purpose: same process, same transaction rules.
    return store._conn  # noqa: SLF001


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


def add_judgment(store: ResultsStore, judgment: Judgment) -> None:
    """Cache one judgment; an existing one for the same key is kept (the first answer paid for wins)."""
    with write_transaction(_conn(store)) as conn:
        conn.execute(
            "INSERT INTO judgments (judge_model, prompt_hash, repeat_index, prompt, response, score, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (judge_model, prompt_hash, repeat_index) DO NOTHING",
            (judgment.judge_model, judgment.prompt_hash, judgment.repeat_index, judgment.prompt,
             judgment.response, judgment.score, _now()),
        )


def cached_judgments(store: ResultsStore, judge_model: str, prompt_hashes: Iterable[str]) -> dict[tuple[str, int], Judgment]:
    """(prompt hash, repeat index) -> cached judgment, for the hashes given."""
    found: dict[tuple[str, int], Judgment] = {}
    for chunk in _chunks(sorted(set(prompt_hashes))):
        marks = ",".join("?" * len(chunk))
        rows = _conn(store).execute(
            "SELECT prompt_hash, repeat_index, prompt, response, score FROM judgments "
            f"WHERE judge_model = ? AND prompt_hash IN ({marks})",
            (judge_model, *chunk),
        ).fetchall()
        for prompt_hash, repeat, prompt, response, score in rows:
            found[(prompt_hash, int(repeat))] = Judgment(judge_model, prompt_hash, int(repeat), prompt, response, score)
    return found


def count_judgments(store: ResultsStore, judge_model: str | None = None) -> int:
    row = _conn(store).execute(
        "SELECT count(*) FROM judgments WHERE (? IS NULL OR judge_model = ?)", (judge_model, judge_model)
    ).fetchone()
    return int(row[0])


def add_generations(store: ResultsStore, generations: Iterable[Generation]) -> None:
    """Store answers in one transaction; an answer already stored under the same key is replaced."""
    rows = [(g.target_key, g.suite, g.question_id, g.turn, g.params_hash, g.text, _now()) for g in generations]
    with write_transaction(_conn(store)) as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO generations (target_key, suite, question_id, turn, params_hash, text, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def stored_generations(store: ResultsStore, target_key: str, suite: str,
                       params_hashes: Iterable[str]) -> dict[str, str]:
    """params hash -> answer text, for this target and suite (the hash covers question, turn and prompt)."""
    found: dict[str, str] = {}
    for chunk in _chunks(sorted(set(params_hashes))):
        marks = ",".join("?" * len(chunk))
        rows = _conn(store).execute(
            f"SELECT params_hash, text FROM generations WHERE target_key = ? AND suite = ? AND params_hash IN ({marks})",
            (target_key, suite, *chunk),
        ).fetchall()
        found.update({params_hash: text for params_hash, text in rows})
    return found
