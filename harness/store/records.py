"""The rows the results store takes and gives back, as plain frozen dataclasses.

JSON-valued fields (`meta`, `provenance`, `extra`) are dicts here; the store serialises them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Split = Literal["train", "validation"]
JobStateName = Literal["pending", "running", "done", "failed"]
SPLITS: tuple[str, ...] = ("train", "validation")
JOB_STATES: tuple[str, ...] = ("pending", "running", "done", "failed")


@dataclass(frozen=True)
class CheckpointRecord:
    """A checkpoint the store knows, keyed by the pipeline's job key."""

    key: str
    path: str
    kind: str
    content_hash: str
    provenance: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""


@dataclass(frozen=True)
class EvalRun:
    """One checkpoint x suite x benchmark evaluation; it groups that evaluation's scores and items.

    `meta` holds what the whole run shares: backend, batch size, lm-eval and task versions.
    """

    checkpoint: str
    suite: str
    benchmark: str
    experiment: str | None = None
    method: str | None = None
    seed: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Score:
    """One metric of an eval run, as written; `meta` is for what belongs to this metric alone (a filter name)."""

    metric: str
    value: float
    stderr: float | None = None
    n: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreRow:
    """A stored score with the eval run it belongs to, as read back by `ResultsStore.scores`."""

    eval_id: int
    experiment: str | None
    checkpoint: str
    method: str | None
    seed: int | None
    suite: str
    benchmark: str
    metric: str
    value: float
    stderr: float | None
    n: int | None
    meta: dict[str, Any]
    run_meta: dict[str, Any]
    created_at: str


@dataclass(frozen=True)
class ItemRecord:
    """One benchmark item as answered: `item_hash` lets two methods be compared on provably the same items.

    `score` is None where the item was not scored (a judge that failed); SQLite stores NaN as NULL too.
    """

    item_id: str
    item_hash: str
    prediction: str | None
    target: str | None
    score: float | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CurvePoint:
    """One logged loss of a training run."""

    step: int
    split: Split
    loss: float
    tokens: int | None = None


@dataclass(frozen=True)
class JobState:
    """The pipeline's last word on one job."""

    key: str
    kind: str
    state: JobStateName
    error: str | None
    created_at: str
    updated_at: str
