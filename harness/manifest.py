"""The typed view of a checkpoint manifest (`checkpoint.json`, or the copy the results store keeps):
parsed once into small frozen records, with a one-line error naming the field of a malformed one.

Every field is optional except where a checkpoint cannot be used without it: manifests differ by
how the checkpoint was made (a trained run carries `training`, `data`, `code_version`; a merge
`merge`; an ensemble `ensemble`; a scaled control `scaled_from`), and stores keep manifests written
by older versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.errors import UserError

_EMPTY: Mapping[str, Any] = {}


@dataclass(frozen=True)
class BaseModelRef:
    """The pre-trained model a checkpoint is made on. `details`: what else its record says (e.g. the
    source file's hash and quantisation of a GGUF model)."""

    id: str | None = None
    revision: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str | None:
        """`id@revision` (or `id`), the one form reports show."""
        if not self.id:
            return None
        return self.id + (f"@{self.revision}" if self.revision else "")

    def as_dict(self) -> dict[str, Any]:
        """The record as a manifest stores it (to copy it into a derived checkpoint's manifest)."""
        return {**self.details, "id": self.id, "revision": self.revision}


@dataclass(frozen=True)
class Provenance:
    """Who made the checkpoint: the experiment row (`method`, its label), the registered method
    (`method_name`), its options, the seed and data source; `extra`: any other recorded fact."""

    method: str | None = None
    method_name: str | None = None
    options: Mapping[str, Any] | None = None
    experiment: str | None = None
    seed: int | None = None
    data: str | None = None
    data_fingerprint: str | None = None
    command: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def registered_method(self) -> str | None:
        """The registered method's name (a run records it beside its row label; a merge as `method`)."""
        return self.method_name or self.method


@dataclass(frozen=True)
class MergeInput:
    path: str | None
    run_key: str | None


@dataclass(frozen=True)
class MergeRecord:
    """How a merged (or ensembled) checkpoint was combined from its inputs."""

    op: str
    inputs: tuple[MergeInput, ...] = ()
    weights: tuple[float, ...] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None
    lora_rank: int | None = None


@dataclass(frozen=True)
class ScaledFrom:
    """The run a scaled control (base + α·ΔW) was made from."""

    path: str | None
    run_key: str | None
    alpha: float | None


@dataclass(frozen=True)
class DataStats:
    fingerprint: str | None = None
    n_records: int | None = None
    n_instruction_records: int | None = None

    @property
    def instruction_examples(self) -> int | None:
        # manifests before ENGINE_VERSION 2 have only n_records (instruction and text records together)
        return self.n_instruction_records if self.n_instruction_records is not None else self.n_records


@dataclass(frozen=True)
class TrainingProtocol:
    """How a trained run was trained: the training config, its data, metrics and code version."""

    config: Mapping[str, Any] = field(default_factory=dict)
    data: DataStats = field(default_factory=DataStats)
    run: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    code_version: Mapping[str, Any] = field(default_factory=dict)

    @property
    def template(self) -> str | None:
        template = self.config.get("template")
        return str(template) if template else None


@dataclass(frozen=True)
class Manifest:
    kind: str | None
    run_key: str | None = None
    base_model: BaseModelRef = field(default_factory=BaseModelRef)
    provenance: Provenance = field(default_factory=Provenance)
    merge: MergeRecord | None = None
    scaled_from: ScaledFrom | None = None
    variant: str | None = None
    training: TrainingProtocol | None = None  # None: not a trained run (a merge, a control, a base)

    @property
    def parents(self) -> list[str]:
        """Run keys of the checkpoints this one was made from (merge inputs, or the run a control scales)."""
        keys = [i.run_key for i in self.merge.inputs] if self.merge else []
        if self.scaled_from is not None:
            keys.append(self.scaled_from.run_key)
        return [k for k in keys if k]


def parse_manifest(raw: Any, where: str) -> Manifest:
    """The typed manifest of `raw`; `where` (a file, or a store key) starts the error message."""
    if not isinstance(raw, Mapping):
        raise _error(where, "the manifest", "must be a JSON object", raw)
    training = None
    if "training" in raw:
        training = TrainingProtocol(
            config=_section(raw, "training", where), run=_section(raw, "run", where),
            data=_data_stats(_section(raw, "data", where), where), metrics=_section(raw, "metrics", where),
            code_version=_section(raw, "code_version", where))
    return Manifest(
        kind=_text(raw, "kind", where), run_key=_text(raw, "run_key", where),
        base_model=_base_model(_section(raw, "base_model", where), where),
        provenance=_provenance(_section(raw, "provenance", where), where),
        merge=_merge(raw, where), scaled_from=_scaled_from(raw, where),
        variant=_text(raw, "variant", where), training=training)


def _error(where: str, name: str, problem: str, value: Any) -> UserError:
    shown = repr(value) if len(repr(value)) <= 40 else type(value).__name__
    return UserError(f"{where}: {name} {problem} (got {shown}); re-create the checkpoint")


def _section(raw: Mapping[str, Any], name: str, where: str, prefix: str = "") -> Mapping[str, Any]:
    value = raw.get(name)
    if value is None:
        return _EMPTY
    if not isinstance(value, Mapping):
        raise _error(where, prefix + name, "must be an object", value)
    return value


def _text(raw: Mapping[str, Any], name: str, where: str, prefix: str = "") -> str | None:
    value = raw.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise _error(where, prefix + name, "must be a string", value)
    return str(value)


def _int(raw: Mapping[str, Any], name: str, where: str, prefix: str = "") -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _error(where, prefix + name, "must be an integer", value)
    return value


def _number(raw: Mapping[str, Any], name: str, where: str, prefix: str = "") -> float | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _error(where, prefix + name, "must be a number", value)
    return float(value)


def _base_model(raw: Mapping[str, Any], where: str) -> BaseModelRef:
    details = {k: v for k, v in raw.items() if k not in ("id", "revision")}
    return BaseModelRef(_text(raw, "id", where, "base_model."), _text(raw, "revision", where, "base_model."),
                        details)


_PROVENANCE_FIELDS = ("method", "method_name", "options", "experiment", "seed", "data", "data_fingerprint",
                      "command")


def _provenance(raw: Mapping[str, Any], where: str) -> Provenance:
    p = "provenance."
    options = raw.get("options")
    if options is not None and not isinstance(options, Mapping):
        raise _error(where, p + "options", "must be an object", options)
    return Provenance(
        method=_text(raw, "method", where, p), method_name=_text(raw, "method_name", where, p), options=options,
        experiment=_text(raw, "experiment", where, p), seed=_int(raw, "seed", where, p),
        data=_text(raw, "data", where, p), data_fingerprint=_text(raw, "data_fingerprint", where, p),
        command=_text(raw, "command", where, p),
        extra={k: v for k, v in raw.items() if k not in _PROVENANCE_FIELDS})


def _data_stats(raw: Mapping[str, Any], where: str) -> DataStats:
    return DataStats(_text(raw, "fingerprint", where, "data."), _int(raw, "n_records", where, "data."),
                     _int(raw, "n_instruction_records", where, "data."))


def _inputs(raw: Any, name: str, where: str) -> tuple[MergeInput, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _error(where, name, "must be a list", raw)
    inputs = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise _error(where, f"{name}[{i}]", "must be an object", entry)
        inputs.append(MergeInput(_text(entry, "path", where, f"{name}[{i}]."),
                                 _text(entry, "run_key", where, f"{name}[{i}].")))
    return tuple(inputs)


def _weights(raw: Any, name: str, where: str) -> tuple[float, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or any(isinstance(w, bool) or not isinstance(w, int | float) for w in raw):
        raise _error(where, name, "must be a list of numbers", raw)
    return tuple(float(w) for w in raw)


def _merge(raw: Mapping[str, Any], where: str) -> MergeRecord | None:
    if raw.get("ensemble") is not None:
        ensemble = _section(raw, "ensemble", where)
        return MergeRecord("ensemble", _inputs(ensemble.get("members"), "ensemble.members", where),
                           _weights(ensemble.get("weights"), "ensemble.weights", where))
    merge = _section(raw, "merge", where)
    if not merge:
        return None
    op = _text(merge, "op", where, "merge.")
    if op is None:
        raise _error(where, "merge.op", "is missing", None)
    return MergeRecord(op, _inputs(merge.get("inputs"), "merge.inputs", where),
                       _weights(merge.get("weights"), "merge.weights", where), _section(merge, "params", where, "merge."),
                       _int(merge, "seed", where, "merge."), _int(merge, "lora_rank", where, "merge."))


def _scaled_from(raw: Mapping[str, Any], where: str) -> ScaledFrom | None:
    scaled = _section(raw, "scaled_from", where)
    if not scaled:
        return None
    p = "scaled_from."
    return ScaledFrom(_text(scaled, "path", where, p), _text(scaled, "run_key", where, p),
                      _number(scaled, "alpha", where, p))
