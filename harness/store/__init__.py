"""The results database (SQLite in WAL mode): experiments, checkpoints, eval runs with their scores
and per-item records, training curves and pipeline job states.
"""

from harness.store.records import (
    CheckpointRecord,
    CurvePoint,
    EvalRun,
    ItemRecord,
    JobState,
    Score,
    ScoreRow,
)
from harness.store.schema import SCHEMA_VERSION
from harness.store.store import RESULTS_DB_NAME, ResultsStore

__all__ = [
    "RESULTS_DB_NAME",
    "SCHEMA_VERSION",
    "CheckpointRecord",
    "CurvePoint",
    "EvalRun",
    "ItemRecord",
    "JobState",
    "ResultsStore",
    "Score",
    "ScoreRow",
]
