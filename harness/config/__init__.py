"""The experiment configuration: schema (schema.py) and loading with one-line errors (loader.py)."""

from harness.config.loader import load_experiment, method_options
from harness.config.schema import (
    BaseModelConfig,
    DataConfig,
    Experiment,
    LoraConfig,
    MethodEntry,
    OptimizerConfig,
    PluginEntry,
    SchedulerConfig,
    TrainingConfig,
)

__all__ = [
    "BaseModelConfig", "DataConfig", "Experiment", "LoraConfig", "MethodEntry", "OptimizerConfig",
    "PluginEntry", "SchedulerConfig", "TrainingConfig", "load_experiment", "method_options",
]
