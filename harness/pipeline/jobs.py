"""Jobs of an experiment's DAG: what each does, what it depends on, and its content key.

A job is plain data (JSON), so any executor can ship it to another process or machine; the
key is a hash of everything that determines its output (inputs and code versions,
harness.keys.versioned_key), so finished work is found and skipped.

A job's done-marker (`<results>/jobs/<key>.done.json`, written last and atomically) holds its
outputs, the code versions it ran with, its timing, and the size and sha256 of every output file,
so a finished job whose files were damaged afterwards is found (`verify`) and run again.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.atomic import write_text_atomic
from harness.pipeline.fingerprints import FileFingerprint, fingerprint_files, verify_files

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
    logical: str = ""  # the key without code versions (who ran before with other code, for `atax status`)
    versions: dict[str, str] = field(default_factory=dict)  # the code versions folded into `key`

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Job:
        data = json.loads(text)
        data["deps"] = tuple(data["deps"])
        return cls(**data)


@dataclass(frozen=True)
class DoneMarker:
    job: str  # the label
    kind: str
    outputs: dict[str, Any]
    logical: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    files: dict[str, FileFingerprint] = field(default_factory=dict)  # path -> (size, mtime_ns, sha256)
    seconds: float | None = None  # how long the job ran


def jobs_dir(results_dir: Path) -> Path:
    return Path(results_dir) / "jobs"


def done_marker(results_dir: Path, key: str) -> Path:
    return jobs_dir(results_dir) / f"{key}.done.json"


def output_paths(kind: str, outputs: dict[str, Any]) -> list[Path]:
    """The directories a job wrote (checkpoints); their files are fingerprinted in its marker."""
    if kind == "train":
        return [Path(outputs["path"])]
    if kind == "combine":
        return [Path(c["path"]) for c in outputs["checkpoints"]]
    return []


def mark_done(results_dir: Path, job: Job, outputs: dict[str, Any], seconds: float | None = None) -> None:
    """Written last, atomically: a job with a marker is complete; without one it runs again."""
    files = fingerprint_files(output_paths(job.kind, outputs))
    marker = DoneMarker(job.label, job.kind, outputs, job.logical, job.versions, files,
                        None if seconds is None else round(seconds, 3))
    write_text_atomic(done_marker(results_dir, job.key), json.dumps(asdict(marker), sort_keys=True))


def read_marker(path: Path) -> DoneMarker | None:
    """The marker at `path`, or None when it is unreadable (a damaged marker is a job to redo)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return DoneMarker(job=data["job"], kind=data.get("kind", ""), outputs=data["outputs"],
                          logical=data.get("logical", ""), versions=data.get("versions", {}),
                          files={p: tuple(f) for p, f in data.get("files", {}).items()},
                          seconds=data.get("seconds"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def outputs_of(results_dir: Path, key: str) -> dict[str, Any] | None:
    marker = read_marker(done_marker(results_dir, key))
    return None if marker is None else marker.outputs


def verify(results_dir: Path, key: str) -> tuple[DoneMarker | None, str | None]:
    """(marker, None) when the job is done and its output files are as written; (marker, problem)
    when they are not (a missing, resized or changed file); (None, None) when it has no marker."""
    path = done_marker(results_dir, key)
    if not path.is_file():
        return None, None
    marker = read_marker(path)
    if marker is None:
        return None, f"unreadable done-marker {path}"
    return marker, verify_files(marker.files)


def discard_outputs(results_dir: Path, key: str, marker: DoneMarker | None) -> None:
    """Remove a job's marker and the output directories it names, so the job runs from scratch."""
    done_marker(results_dir, key).unlink(missing_ok=True)
    for directory in output_paths(marker.kind, marker.outputs) if marker is not None else []:
        discard_dir(directory)


def discard_dir(directory: Path) -> None:
    """Remove `directory` (renamed away first, so no reader sees it half-deleted)."""
    if not directory.exists():
        return
    trash = directory.with_name(f".{directory.name}.discarded")
    shutil.rmtree(trash, ignore_errors=True)
    directory.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def all_markers(results_dir: Path) -> dict[str, DoneMarker]:
    """Every readable done-marker by job key."""
    found = {}
    for path in jobs_dir(results_dir).glob("*.done.json") if jobs_dir(results_dir).is_dir() else []:
        marker = read_marker(path)
        if marker is not None:
            found[path.name.removesuffix(".done.json")] = marker
    return found
