"""Checks that need more than the schema: files exist, plug-ins are registered, their options
are valid, row names are unique, the work an option asks for fits the data and the model. Each
raises ConfigError with the YAML path of the field.
"""

from __future__ import annotations

import json
import math
import os
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from harness import registry
from harness.builtin import builtin_names
from harness.config.messages import first_error, model_at
from harness.config.schema import Experiment, PluginEntry
from harness.config.yaml_source import ConfigError, Loc
from harness.sources import classify

DATA_SUFFIXES = (".json", ".jsonl", ".parquet")
# Names the pipeline provides itself rather than through a registry.
IMPLICIT_BACKENDS = ("auto",)
IMPLICIT_EXECUTORS = ("local",)
# Training runs one method entry may plan (DTM's k, a soup's settings): a sane absolute cap, so a
# typo like k: 1000000000 is refused here instead of allocating a billion-job plan.
MAX_RUNS_PER_METHOD = 1024
_COUNT_LINES_UP_TO = 64 << 20  # count a local JSONL's records at check time only when this cheap


def check_experiment(exp: Experiment, base_dir: Path) -> None:
    check_model_ref(exp.base_model.id, base_dir, ("base_model", "id"))
    check_data_ref(exp.data.source, base_dir, ("data", "source"))
    _check_plugins(exp.methods, registry.methods, "methods")
    _check_planned_runs(exp, base_dir)
    _check_context(exp, base_dir)
    _check_results_dir(exp.results_dir, base_dir)
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
        if source.path.suffix.lower() == ".gguf":  # a GGUF model file, dequantised on first use
            if not source.path.is_file():
                raise ConfigError(loc, f"GGUF file '{source.path}' not found; give an existing .gguf model file")
            return
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
    _reject_bools(options_model, entry.options, loc + ("options",))
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


def _reject_bools(model: type[BaseModel], options: Any, loc: Loc) -> None:
    """`k: true` is not 1: refuse a bool where a plug-in's option wants a number (pydantic's lax
    mode would take it), also inside nested option models."""
    if not isinstance(options, dict):
        return
    for key, value in options.items():
        field = model.model_fields.get(str(key))
        if field is None:
            continue
        leaves = _scalar_types(field.annotation)
        if isinstance(value, bool) and bool not in leaves and leaves & {int, float}:
            words = "an integer" if int in leaves else "a number"
            raise ConfigError(loc + (key,), f"must be {words} (got {value!r})")
        inner = model_at(model, (str(key),))
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if inner is not None:
                _reject_bools(inner, item, loc + ((key, index) if isinstance(value, list) else (key,)))


def _scalar_types(annotation: Any) -> set[Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple, typing.Annotated):
        return set().union(*(_scalar_types(arg) for arg in typing.get_args(annotation)))
    return {annotation} if annotation in (bool, int, float) else set()


def _check_planned_runs(exp: Experiment, base_dir: Path) -> None:
    """A method's planned run count (DTM's k, ...) must fit an absolute cap and the data; so must the
    sweep's largest sample count."""
    records, where = _known_records(exp, base_dir)
    data_records, data_where = _known_records(exp, base_dir, with_sweep=False)
    if exp.sweep is not None and exp.sweep.max_samples and data_records is not None \
            and exp.sweep.max_samples[-1] > data_records:
        raise ConfigError(("sweep", "max_samples"), f"{exp.sweep.max_samples[-1]:,} is more than the "
                                                    f"{data_records:,} samples {data_where} has; lower it")
    for index, entry in enumerate(exp.methods):
        method_cls = registry.methods.get(entry.name)
        planned = getattr(method_cls, "planned_runs", None)
        if planned is None:
            continue
        runs = planned(method_cls(method_cls.Options.model_validate(entry.options)))
        loc = ("methods", index, "options")
        if runs > MAX_RUNS_PER_METHOD:
            raise ConfigError(loc, f"plans {runs:,} training runs; at most {MAX_RUNS_PER_METHOD:,} per method")
        if records is not None and runs > records:
            raise ConfigError(loc, f"plans {runs:,} training runs (one per part of the data) but {where} has "
                                   f"at most {records:,} samples; plan fewer runs or use more data")


def _known_records(exp: Experiment, base_dir: Path, with_sweep: bool = True) -> tuple[int | None, str]:
    """An upper bound on the training records (of the smallest sweep point with `with_sweep`), when
    it is cheap to know (None otherwise)."""
    bound, where = exp.data.max_samples, "data.max_samples"
    source = classify(exp.data.source, base_dir)
    path = source.path
    if source.kind == "local" and path is not None and path.suffix == ".jsonl" and path.is_file() \
            and path.stat().st_size <= _COUNT_LINES_UP_TO:
        with path.open("rb") as handle:
            lines = sum(1 for line in handle if line.strip())
        if bound is None or lines < bound:
            bound, where = lines, f"'{path.name}'"
    if bound is None:
        return None, where
    bound = math.ceil(bound * exp.data.data_fraction)
    if with_sweep and exp.sweep is not None:  # the smallest data size of the sweep is planned too
        first = exp.sweep.points[0]
        bound = min(bound, int(first)) if exp.sweep.max_samples else math.ceil(bound * first)
        where += f" with sweep point {first:g}"
    return bound, where


def _check_context(exp: Experiment, base_dir: Path) -> None:
    """max_seq_len within the model's context, when a local config.json says what that is."""
    source = classify(exp.base_model.id, base_dir)
    if source.kind != "local" or source.path is None:
        return
    try:
        context = json.loads((source.path / "config.json").read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        return  # the model's own loader reports a broken config.json with its file
    if isinstance(context, int) and not isinstance(context, bool) and exp.training.max_seq_len > context:
        raise ConfigError(("training", "max_seq_len"), f"{exp.training.max_seq_len} is more than the model's "
                                                       f"context ({context} tokens); lower it")


def _check_results_dir(results_dir: Path, base_dir: Path) -> None:
    path = results_dir.expanduser()
    path = path if path.is_absolute() else base_dir / path
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        what = "is a file" if existing == path else f"is inside the file '{existing}'"
        raise ConfigError(("results_dir",), f"'{path}' {what}; give a directory (created if missing)")
