"""Checks that need more than the schema: files exist, plug-ins are registered, their options
are valid, row names are unique. Each raises ConfigError with the YAML path of the field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from harness import registry
from harness.builtin import builtin_names
from harness.config.messages import first_error
from harness.config.schema import Experiment, PluginEntry
from harness.config.yaml_source import ConfigError, Loc
from harness.sources import classify

DATA_SUFFIXES = (".json", ".jsonl", ".parquet")
# Names the pipeline provides itself rather than through a registry.
IMPLICIT_BACKENDS = ("auto",)
IMPLICIT_EXECUTORS = ("local",)


def check_experiment(exp: Experiment, base_dir: Path) -> None:
    check_model_ref(exp.base_model.id, base_dir, ("base_model", "id"))
    check_data_ref(exp.data.source, base_dir, ("data", "source"))
    _check_plugins(exp.methods, registry.methods, "methods")
    _check_unique([m.row_name for m in exp.methods], "methods", "label",
                  "give each a distinct 'label'")
    _check_plugins(exp.suites, registry.suites, "suites")
    _check_unique([s.name for s in exp.suites], "suites", "name", "list each suite once")
    _check_plugin(exp.backend, registry.backends, ("backend",), IMPLICIT_BACKENDS)
    _check_plugin(exp.executor, registry.executors, ("executor",), IMPLICIT_EXECUTORS)


def check_model_ref(ref: str, base_dir: Path, loc: Loc) -> None:
    source = classify(ref, base_dir)
    if source.kind == "builtin":
        _check_builtin(ref, loc)
    elif source.kind == "local":
        assert source.path is not None
        if not source.path.is_dir():
            raise ConfigError(loc, f"model directory '{source.path}' not found; give a local HF model "
                                   "directory, a hub id (org/name) or builtin:tiny-llama")
        if not (source.path / "config.json").is_file():
            raise ConfigError(loc, f"'{source.path}' has no config.json; give a Hugging Face model directory")


def check_data_ref(ref: str, base_dir: Path, loc: Loc) -> None:
    source = classify(ref, base_dir)
    if source.kind == "builtin":
        _check_builtin(ref, loc)
        return
    if source.kind == "hub":
        return
    path = source.path
    assert path is not None
    if not path.exists():
        raise ConfigError(loc, f"file '{path}' not found; give a local JSON/JSONL/parquet file, "
                               "a hub dataset id (org/name) or builtin:toy-instructions")
    if path.is_dir():
        if not any(p.suffix in DATA_SUFFIXES for p in path.rglob("*") if p.is_file()):
            raise ConfigError(loc, f"directory '{path}' holds no .json/.jsonl/.parquet file")
        return
    if path.suffix not in DATA_SUFFIXES:
        raise ConfigError(loc, f"unsupported file type '{path.suffix}' for '{path}'; use .json, .jsonl or .parquet")
    if not os.access(path, os.R_OK):
        raise ConfigError(loc, f"file '{path}' is not readable; check its permissions")


def _check_builtin(ref: str, loc: Loc) -> None:
    if ref not in builtin_names():
        raise ConfigError(loc, f"unknown built-in '{ref}'; known: {', '.join(builtin_names())}")


def _check_plugins(entries: list[Any], reg: registry.Registry[Any], field: str) -> None:
    for index, entry in enumerate(entries):
        _check_plugin(entry, reg, (field, index), ())


def _check_plugin(entry: PluginEntry, reg: registry.Registry[Any], loc: Loc, implicit: tuple[str, ...]) -> None:
    if entry.name in implicit and entry.name not in reg:
        if entry.options:
            raise ConfigError(loc + ("options",), f"'{entry.name}' takes no options")
        return
    if entry.name not in reg:
        known = ", ".join(sorted({*implicit, *reg.names()})) or "none installed"
        raise ConfigError(loc + ("name",), f"unknown {reg.kind} '{entry.name}'; known: {known}")
    plugin = reg.get(entry.name)
    options_model: type[BaseModel] | None = getattr(plugin, "Options", None)
    if options_model is None:
        if entry.options:
            raise ConfigError(loc + ("options",), f"{reg.kind} '{entry.name}' takes no options")
        return
    try:
        options_model.model_validate(entry.options)
    except ValidationError as exc:
        raise first_error(exc, options_model, loc + ("options",)) from None


def _check_unique(names: list[str], field: str, key: str, hint: str) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise ConfigError((field, index, key), f"'{name}' appears twice; {hint}")
        seen.add(name)
