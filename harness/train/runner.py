"""Train one method for one seed: plan -> train every RunSpec -> combine, recorded in the store.

Runs live under `<results>/runs/<run key>/`, so two methods that plan the same run (same data,
protocol, seed and hooks) share it; the combined checkpoint goes to `<results>/checkpoints/`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import registry
from harness.checkpoint import Checkpoint
from harness.config import Experiment, MethodEntry, TrainingConfig, method_options
from harness.data import InstructionRecord, fingerprint, load_instruction_data
from harness.keys import run_versions, versioned_key
from harness.method import CombineContext, PlanContext, RunSpec
from harness.progress import Progress
from harness.store import CurvePoint, ResultsStore
from harness.train.engine import CURVE_FILE, ENGINE_VERSION, TrainJob, train


@dataclass(frozen=True)
class MethodResult:
    checkpoints: list[Checkpoint]  # one, or one per variant (e.g. scaled_vanilla's alphas)
    runs: list[Checkpoint]

    @property
    def checkpoint(self) -> Checkpoint:
        return self.checkpoints[0]


def find_method(experiment: Experiment, name: str) -> MethodEntry:
    """The method entry by its row name (label) or, when unambiguous, by its method name."""
    by_row = [m for m in experiment.methods if m.row_name == name]
    by_name = [m for m in experiment.methods if m.name == name]
    if by_row:
        return by_row[0]
    if len(by_name) == 1:
        return by_name[0]
    from harness.errors import UserError

    rows = ", ".join(m.row_name for m in experiment.methods)
    reason = "is ambiguous" if by_name else "is not in the experiment"
    raise UserError(f"--method: '{name}' {reason}; the experiment's methods are: {rows}")


def split_validation(records: list[InstructionRecord], fraction: float, seed: int
                     ) -> tuple[list[InstructionRecord], list[InstructionRecord]]:
    """Hold out a seeded fraction for the validation loss; the same for every method."""
    if fraction <= 0:
        return records, []
    order = list(range(len(records)))
    random.Random(f"validation:{seed}").shuffle(order)
    held = set(order[: max(1, round(fraction * len(records)))])
    return ([r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held])


def apply_overrides(training: TrainingConfig, overrides: dict[str, Any]) -> TrainingConfig:
    def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in extra.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    return TrainingConfig.model_validate(merge(training.model_dump(), overrides)) if overrides else training


def run_key_parts(experiment: Experiment, training: TrainingConfig, spec: RunSpec, data_fp: str,
                  validation_fp: str) -> tuple[dict[str, Any], dict[str, str]]:
    """What determines a run's output: (the inputs, the code versions of the engine and its hooks)."""
    material = {
        "base_model": experiment.base_model.model_dump(mode="json"),
        "training": training.model_dump(mode="json"),
        # The engine initialises from `seed` when `init_seed` is unset: the same run, one key (a soup's
        # first ingredient at the experiment's seed shares vanilla's run instead of training it again).
        "seed": spec.seed, "init_seed": None if spec.init_seed == spec.seed else spec.init_seed,
        "data": data_fp, "validation": validation_fp,
        "hooks": [_hook(spec.data_transform), _hook(spec.regularizer), _hook(spec.auxiliary_loss),
                  _hook(spec.adapter)],
    }
    return material, run_versions(spec, ENGINE_VERSION)


def run_key(experiment: Experiment, training: TrainingConfig, spec: RunSpec, data_fp: str, validation_fp: str) -> str:
    return versioned_key(*run_key_parts(experiment, training, spec, data_fp, validation_fp))[0]


@dataclass
class MethodData:
    """A method's view of the experiment data: training records and the held-out validation part."""

    records: list[InstructionRecord]
    validation: list[InstructionRecord]
    source: str
    fingerprint: str


def method_data(experiment: Experiment) -> MethodData:
    data = load_instruction_data(experiment.data)
    records, validation = split_validation(data.records, experiment.training.validation_fraction,
                                           experiment.data.seed)
    return MethodData(records, validation, data.source, data.fingerprint)


def build_method(entry: MethodEntry) -> Any:
    return registry.methods.get(entry.name)(method_options(entry.name, entry.options))


def plan_method(experiment: Experiment, entry: MethodEntry, seed: int, results_dir: Path,
                data: MethodData) -> list[RunSpec]:
    workdir = results_dir / "work" / f"{entry.row_name}-seed{seed}"
    return build_method(entry).plan(data.records, PlanContext(seed=seed, workdir=workdir,
                                                              base_model=experiment.base_model.id,
                                                              data_source=data.source,
                                                              validation=data.validation))


def run_records(data: MethodData, spec: RunSpec) -> list[InstructionRecord]:
    """The records a planned run trains on (its indices into the method's data)."""
    return list(data.records) if spec.indices is None else [data.records[i] for i in spec.indices]


def train_job(experiment: Experiment, entry: MethodEntry, seed: int, results_dir: Path, data: MethodData,
              spec: RunSpec) -> TrainJob:
    """The engine's job for one planned run; its key decides where it lives and whether it is reused."""
    training = apply_overrides(experiment.training, spec.training_overrides)
    records = run_records(data, spec)
    material, versions = run_key_parts(experiment, training, spec, fingerprint(records), fingerprint(data.validation))
    key, logical = versioned_key(material, versions)
    return TrainJob(experiment.base_model, training, spec, records, results_dir / "runs" / key, key,
                    data.validation, provenance={"experiment": experiment.name, "method": entry.row_name,
                                                 "method_name": entry.name, "options": entry.options,
                                                 "seed": seed, "data": data.source,
                                                 "data_fingerprint": data.fingerprint},
                    logical_key=logical, versions=versions)


def combine_dir(results_dir: Path, entry: MethodEntry, seed: int) -> Path:
    return results_dir / "checkpoints" / f"{entry.row_name}-seed{seed}"


def combine_method(experiment: Experiment, entry: MethodEntry, seed: int, results_dir: Path, data: MethodData,
                   specs: list[RunSpec], runs: list[Checkpoint]) -> list[Checkpoint]:
    combined = build_method(entry).combine(runs, CombineContext(
        seed=seed, out_dir=combine_dir(results_dir, entry, seed),
        runs_data=[run_records(data, spec) for spec in specs], validation=data.validation,
        template=experiment.training.template, max_seq_len=experiment.training.max_seq_len))
    finals = [combined] if isinstance(combined, Checkpoint) else list(combined)
    record_checkpoints(results_dir, experiment, runs, finals)
    return finals


def train_method(experiment: Experiment, entry: MethodEntry, seed: int, results_dir: Path,
                 progress: Progress | None = None) -> MethodResult:
    """plan -> train every run (in turn) -> combine, in this process (`atax train`)."""
    data = method_data(experiment)
    specs = plan_method(experiment, entry, seed, results_dir, data)
    runs = [train(train_job(experiment, entry, seed, results_dir, data, spec), progress) for spec in specs]
    return MethodResult(combine_method(experiment, entry, seed, results_dir, data, specs, runs), runs)


def record_checkpoints(results_dir: Path, experiment: Experiment, runs: list[Checkpoint],
                       finals: list[Checkpoint]) -> None:
    with ResultsStore.open(results_dir) as store:
        store.add_experiment(experiment.name, experiment.model_dump_json())
        for checkpoint in {id(c): c for c in [*runs, *finals]}.values():
            store.add_checkpoint(checkpoint.store_key, str(checkpoint.path), checkpoint.kind, checkpoint.content_hash(),
                                 checkpoint.manifest)
        for run in runs:
            curve_file = run.path / CURVE_FILE
            if curve_file.is_file():
                points = [json.loads(line) for line in curve_file.read_text().splitlines() if line.strip()]
                store.add_curve_points(run.store_key,
                                       [CurvePoint(p["step"], p["split"], p["loss"], p.get("tokens")) for p in points])


def _hook(ref: Any) -> Any:
    return None if ref is None else [ref.name, ref.options]
