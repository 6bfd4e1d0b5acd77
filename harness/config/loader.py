"""Load an experiment file: YAML -> schema -> semantic checks -> paths resolved.

Every failure is one `UserError` line `FILE:LINE: field.path: what is wrong`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ValidationError

from harness.config.checks import check_experiment
from harness.config.messages import first_error
from harness.config.schema import Experiment
from harness.config.yaml_source import ConfigError, read_yaml
from harness.method import MethodOptions
from harness.registry import methods
from harness.sources import classify


def load_experiment(path: Path | str) -> Experiment:
    """Validate the experiment file at `path`; relative paths in it are relative to its directory."""
    source = read_yaml(Path(path))
    base_dir = source.path.resolve().parent
    try:
        try:
            experiment = Experiment.model_validate(source.data)
        except ValidationError as exc:
            raise first_error(exc, Experiment) from None
        check_experiment(experiment, base_dir)
    except ConfigError as exc:
        raise source.error(exc) from None
    return _resolve_paths(experiment, base_dir)


def method_options(entry_name: str, options: dict) -> MethodOptions:
    """The validated options object of a method entry (already checked at load time)."""
    options_model: type[BaseModel] = methods.get(entry_name).Options
    try:
        return options_model.model_validate(options)  # type: ignore[return-value]
    except ValidationError as exc:  # options made in code, past load_experiment: still one line
        raise first_error(exc, options_model, (entry_name, "options")) from None


def _resolve_paths(experiment: Experiment, base_dir: Path) -> Experiment:
    def local(ref: str) -> str:
        src = classify(ref, base_dir)
        return str(src.path) if src.kind == "local" else ref

    results_dir = experiment.results_dir.expanduser()
    return experiment.model_copy(update={
        "base_model": experiment.base_model.model_copy(update={"id": local(experiment.base_model.id)}),
        "data": experiment.data.model_copy(update={"source": local(experiment.data.source)}),
        "results_dir": results_dir if results_dir.is_absolute() else (base_dir / results_dir).resolve(),
    })
