"""Content keys: a short hash of everything that determines an output, so equal work is found and reused.

A job's key covers its inputs and the code versions it executes (`versioned_key`): change a plug-in
(and bump its `version`) and exactly the jobs it takes part in get new keys, so they run again;
nothing else does. The *logical* key is the same hash without the versions, so `atax status` can tell
"this job ran before with other code" from "this job is new".
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from harness import registry


def content_key(obj: Any, length: int = 20) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def directory_hash(directory: Path) -> str:
    """sha256 over the relative paths and bytes of every file under `directory`."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode("utf-8") + b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def versioned_key(material: dict[str, Any], versions: dict[str, str]) -> tuple[str, str]:
    """(key, logical key) of a job whose output is determined by `material` and the code `versions`."""
    return content_key({**material, "versions": versions}), content_key(material)


def method_versions(method_name: str) -> dict[str, str]:
    return {f"method:{method_name}": registry.plugin_version("method", method_name)}


def merge_operators(method: Any) -> list[str]:
    """The merge operators a method's combine uses: what it declares (`merge_operators()`), else
    every merge spec (an object with a registered operator `name`) found in its options."""
    declared = getattr(method, "merge_operators", None)
    if callable(declared):
        return sorted(set(declared()))
    found: set[str] = set()

    def visit(value: Any) -> None:
        if isinstance(value, BaseModel):
            name = getattr(value, "name", None)
            if isinstance(name, str) and name in registry.merges and "params" in type(value).model_fields:
                found.add(name)
            for field in type(value).model_fields:
                visit(getattr(value, field))
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    visit(getattr(method, "options", None))
    return sorted(found)


def combine_versions(method_name: str, method: Any) -> dict[str, str]:
    versions = method_versions(method_name)
    for op in merge_operators(method):
        if op in registry.merges:  # not a registered operator (e.g. an ensemble kept as is): no code of its own
            versions[f"merge:{op}"] = registry.plugin_version("merge", op)
    return versions


HOOK_KINDS = (("data_transform", "data_transform"), ("regularizer", "regularizer"),
              ("auxiliary_loss", "auxiliary_loss"), ("adapter", "adapter"))


def run_versions(run: Any, engine_version: str) -> dict[str, str]:
    """The engine's version and those of the hooks a RunSpec plugs into it."""
    versions = {"engine": engine_version}
    for field, kind in HOOK_KINDS:
        ref = getattr(run, field)
        if ref is not None:
            versions[f"{kind}:{ref.name}"] = registry.plugin_version(kind, ref.name)
    return versions


# The backends `auto` may pick at run time (the picked one is recorded with the scores).
AUTO_BACKENDS = ("hf", "vllm")


def eval_versions(suite: str, backend: str) -> dict[str, str]:
    versions = {f"suite:{suite}": registry.plugin_version("suite", suite)}
    # auto's answers come from whichever it picks (on a GPU: vllm, with hf's scorer for log-likelihoods),
    # so a new version of either makes its results stale
    for name in AUTO_BACKENDS if backend == "auto" else (backend,):
        if name in registry.backends:
            versions[f"backend:{name}"] = registry.plugin_version("backend", name)
    return versions


def changed(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """`name old -> new` for every version that differs (for `atax status`)."""
    return [f"{name} {old.get(name, '-')} -> {new.get(name, '-')}" for name in sorted(set(old) | set(new))
            if old.get(name) != new.get(name)]
