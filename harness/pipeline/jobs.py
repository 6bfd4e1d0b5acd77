"""Jobs of an experiment's DAG: what each does, what it depends on, and its content key.

A job is plain data (JSON), so any executor can ship it to another process or machine; the
key is a hash of everything that determines its output, so finished work is found and skipped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.atomic import write_text_atomic

Kind = Literal["plan", "train", "combine", "eval", "report"]


@dataclass(frozen=True)
class Job:
    key: str
    kind: Kind
    label: str  # for people: "train dtm seed 0 cluster-2"
    deps: tuple[str, ...] = ()
    spec: dict[str, Any] = field(default_factory=dict)  # what the worker needs; JSON-serialisable
    gpus: int = 0  # what an executor must reserve for it
    cpus: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Job:
        data = json.loads(text)
        data["deps"] = tuple(data["deps"])
        return cls(**data)


def jobs_dir(results_dir: Path) -> Path:
    return Path(results_dir) / "jobs"


def done_marker(results_dir: Path, key: str) -> Path:
    return jobs_dir(results_dir) / f"{key}.done.json"


def mark_done(results_dir: Path, job: Job, outputs: dict[str, Any]) -> None:
    """Written last, atomically: a job with a marker is complete; without one it runs again."""
    write_text_atomic(done_marker(results_dir, job.key), json.dumps({"job": job.label, "outputs": outputs}))


def outputs_of(results_dir: Path, key: str) -> dict[str, Any] | None:
    marker = done_marker(results_dir, key)
    if not marker.is_file():
        return None
    return json.loads(marker.read_text(encoding="utf-8"))["outputs"]
