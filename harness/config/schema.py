"""The experiment schema: what one `experiment.yaml` may say, with the DTM paper's defaults.

Every field carries its help text; unknown keys are errors everywhere. Plug-in option blocks
(`methods[i].options`, `suites[i].options`, ...) are validated afterwards by the plug-in's own
options model (see loader.py), so this file does not need to know any plug-in.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic import Strict as StrictType

from harness.config.yaml_source import ConfigError

# Strict scalars: YAML `true` is not the integer 1, 16.0 is not a count, "3" is not a number.
Int = Annotated[int, StrictType()]
Num = Annotated[float, StrictType(), AllowInfNan(False)]  # an int is accepted, a bool is not
Bool = Annotated[bool, StrictType()]
SEED_MAX = 2**32 - 1  # numpy's and torch's seed range
COUNT_MAX = 10**9  # samples, steps: far beyond any real run, small enough to plan with
# A name that is also a safe file/directory name: experiment names and row labels become paths.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=,@-]{0,99}")


def safe_name(value: str) -> str:
    if not _SAFE_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a safe name: use 1-100 letters, digits and . _ - + = , @ "
                         "starting with a letter or digit (it becomes a directory name)")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseModelConfig(Strict):
    id: str = Field(description="Hub model id (org/name), a local HF model directory, or builtin:tiny-llama.",
                    min_length=1)
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to pin.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; auto = bfloat16 on GPU, float32 on CPU.")


class DataConfig(Strict):
    source: str = Field(description="Hub dataset id, a local JSON/JSONL/parquet file or dataset directory, "
                                    "or builtin:toy-instructions.", min_length=1)
    split: str = Field("train", description="Split to read from a hub dataset.")
    format: Literal["auto", "alpaca", "messages", "conversations", "instances"] = Field(
        "auto", description="Row format: alpaca (instruction/input/output), messages (TULU chat), "
                            "conversations (ShareGPT), instances (Self-Instruct); for chats the first "
                            "user->assistant turn is kept. auto detects it from the first row.")
    max_samples: Int | None = Field(None, ge=1, le=COUNT_MAX, description="Use at most this many samples (after loading).")
    data_fraction: Num = Field(1.0, gt=0, le=1, description="Use this fraction of the samples (seeded; "
                                                                "subsets of growing fractions are nested).")
    seed: Int = Field(0, ge=0, le=SEED_MAX, description="Seed of the subset selection (the same for every method).")


class LoraConfig(Strict):
    r: Int = Field(16, ge=1, le=8192, description="LoRA rank.")
    alpha: Num = Field(16, gt=0, le=1e6, description="LoRA alpha (scale = alpha / r).")
    dropout: Num = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] = Field(["gate_proj", "up_proj", "down_proj"], min_length=1,
                                      description="Module names LoRA adapts (the paper: the FFN projections).")


class OptimizerConfig(Strict):
    name: Literal["adamw"] = Field("adamw", description="Optimizer.")
    lr: Num = Field(3e-4, gt=0, le=10, description="Peak learning rate.")
    betas: tuple[Num, Num] = Field((0.9, 0.95), description="AdamW betas.")
    eps: Num = Field(1e-8, gt=0, le=1, description="AdamW epsilon.")
    weight_decay: Num = Field(0.0, ge=0, le=100, description="Decoupled weight decay.")

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in betas):
            raise ValueError("each beta must be in [0, 1)")
        return betas


class SchedulerConfig(Strict):
    name: Literal["cosine", "linear", "constant"] = Field("cosine", description="Decay after warm-up (to 0).")
    warmup_steps: Int = Field(100, ge=0, le=COUNT_MAX, description="Linear warm-up steps.")


class TrainingConfig(Strict):
    lora: LoraConfig = Field(default_factory=LoraConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    batch_size: Int = Field(16, ge=1, le=1 << 20, description="Effective batch size (samples per optimizer step).")
    micro_batch_size: Int | None = Field(
        None, ge=1, le=1 << 20, description="Samples per forward pass; gradient accumulation makes up batch_size. "
                                "None = batch_size.")
    max_seq_len: Int = Field(1024, ge=8, le=1 << 20, description="Tokens per sample; longer ones are truncated "
                                                                  "(at most the model's context).")
    epochs: Num = Field(3, gt=0, le=10_000, description="Passes over the data.")
    max_steps: Int | None = Field(None, ge=1, le=COUNT_MAX, description="Stop after this many optimizer steps (overrides epochs).")
    template: Literal["alpaca", "chat"] = Field(
        "alpaca", description="Prompt template: the paper's Alpaca template, or the tokenizer's chat template.")
    loss_on: Literal["response", "all"] = Field("response", description="Tokens that carry the loss.")
    batching: Literal["packed", "grouped", "padded"] = Field(
        "packed", description="How a step's samples form micro-batches: packed into rows without "
                              "cross-attention, grouped by length, or padded in order. Same loss; "
                              "packed and grouped waste less compute on padding.")
    max_grad_norm: Num | None = Field(1.0, gt=0, le=1e9, description="Clip the gradient norm (None: no clipping).")
    validation_fraction: Num = Field(0.0, ge=0, lt=1, description="Hold out this fraction of the data "
                                                                    "(seeded) for a validation loss.")
    eval_steps: Int | None = Field(None, ge=1, le=COUNT_MAX, description="Measure the validation loss every N steps "
                                                           "(and at the end) when data is held out.")
    gradient_checkpointing: Bool = Field(False, description="Trade compute for memory.")
    save_steps: Int | None = Field(None, ge=1, le=COUNT_MAX, description="Save a resumable state every N steps.")
    logging_steps: Int = Field(1, ge=1, le=COUNT_MAX, description="Record the training loss every N steps.")

    @field_validator("micro_batch_size")
    @classmethod
    def _micro_batch_divides(cls, micro: int | None, info: ValidationInfo) -> int | None:
        batch = info.data.get("batch_size")
        if micro is not None and batch is not None and batch % micro:
            raise ValueError(f"must divide batch_size ({batch}); got {micro}")
        return micro


class PluginEntry(Strict):
    """A registered plug-in by name, with its own options (validated by the plug-in)."""

    name: str = Field(min_length=1, description="Registered name (see `atax methods` / `atax suites`).")
    options: dict[str, Any] = Field(default_factory=dict, description="The plug-in's options.")

    @model_validator(mode="before")
    @classmethod
    def _name_shorthand(cls, value: Any) -> Any:
        # `- vanilla` is short for `- name: vanilla`.
        return {"name": value} if isinstance(value, str) else value


class MethodEntry(PluginEntry):
    label: str | None = Field(None, min_length=1,
                              description="Row name in tables; needed when one method appears twice.")

    @field_validator("label")
    @classmethod
    def _safe_label(cls, label: str | None) -> str | None:
        return None if label is None else safe_name(label)

    @property
    def row_name(self) -> str:
        return self.label or self.name


class BackendEntry(PluginEntry):
    name: str = Field("auto", min_length=1, description="Inference backend: auto (vllm on CUDA, else hf), "
                                                         "or a registered backend.")


class ExecutorEntry(PluginEntry):
    name: str = Field("local", min_length=1, description="Where jobs run: local, ray, slurm.")


class SweepConfig(Strict):
    """The data-size sweep: every method is trained once per data size (the DTM paper's Figures 1-3)."""

    data_fraction: list[Num] | None = Field(
        None, max_length=1000, description="Fractions in (0, 1] of the experiment's data (after data.data_fraction and "
                          "data.max_samples), ascending; one row per method and fraction, e.g. vanilla@0.25. "
                          "Subsets are nested: each larger one contains the smaller ones (data.seed).")
    max_samples: list[Int] | None = Field(
        None, max_length=1000, description="Or absolute sample counts, ascending (at most data.max_samples); rows vanilla@400, ...")

    @field_validator("data_fraction")
    @classmethod
    def _fractions(cls, values: list[float] | None) -> list[float] | None:
        if values is not None:
            for value in values:
                if not 0 < value <= 1:
                    raise ValueError(f"{value:g} is outside (0, 1]; give fractions of the data in (0, 1]")
            _ascending(values)
        return values

    @field_validator("max_samples")
    @classmethod
    def _counts(cls, values: list[int] | None) -> list[int] | None:
        if values is not None:
            for value in values:
                if not 1 <= value <= COUNT_MAX:
                    raise ValueError(f"{value} is not a sample count; give counts from 1 to {COUNT_MAX:,}")
            _ascending(values)
        return values

    @model_validator(mode="after")
    def _exactly_one(self) -> SweepConfig:
        if (self.data_fraction is None) == (self.max_samples is None):
            raise ValueError("give exactly one of data_fraction or max_samples (a non-empty ascending list)")
        return self

    @property
    def points(self) -> list[float] | list[int]:
        return list(self.data_fraction if self.data_fraction is not None else self.max_samples or [])


def _ascending(values: list[Any]) -> None:
    if not values:
        raise ValueError("must not be empty")
    for before, after in zip(values[:-1], values[1:], strict=True):
        if after == before:
            raise ValueError(f"{after:g} is listed twice")
        if after < before:
            raise ValueError(f"must be in ascending order ({after:g} comes after {before:g})")


class Experiment(Strict):
    name: str = Field(min_length=1, description="Experiment name (used in the results store and as the "
                                                "report's directory name).")
    base_model: BaseModelConfig
    data: DataConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    methods: list[MethodEntry] = Field(min_length=1, max_length=1000, description="Methods to train and compare.")
    suites: list[PluginEntry] = Field(default_factory=list, max_length=100, description="Evaluation suites.")
    seeds: list[Annotated[Int, Field(ge=0, le=SEED_MAX)]] = Field(
        [0], min_length=1, max_length=1000, description="Every method runs once per seed (each in 0..2**32-1).")
    backend: BackendEntry = Field(default_factory=BackendEntry)
    executor: ExecutorEntry = Field(default_factory=ExecutorEntry)
    results_dir: Path = Field(Path("atax-results"),
                              description="Results store and reports; relative to the experiment file.")
    sweep: SweepConfig | None = Field(None, description="Data-size sweep: train every method at each data "
                                                        "size (rows method@size) for the alignment-tax curve.")

    @field_validator("name")
    @classmethod
    def _safe_experiment_name(cls, name: str) -> str:
        return safe_name(name)

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        duplicates = sorted({s for s in seeds if seeds.count(s) > 1})
        if duplicates:
            raise ValueError(f"seed {duplicates[0]} is listed twice")
        return seeds

    @model_validator(mode="after")
    def _sweep_fits(self) -> Experiment:
        # ConfigError, not ValueError: pydantic passes it through unchanged, with the path of the field
        # to fix (a model-level ValueError would point at the top of the file).
        if self.sweep is None:
            return self
        if self.training.validation_fraction > 0:
            raise ConfigError(("sweep",), "needs training.validation_fraction: 0 (the held-out part is drawn "
                                          "from each subset, so the sweep's subsets would not be nested)")
        cap = self.data.max_samples
        if self.sweep.max_samples and cap is not None and self.sweep.max_samples[-1] > cap:
            raise ConfigError(("sweep", "max_samples"), f"{self.sweep.max_samples[-1]} is more than "
                                                        f"data.max_samples ({cap}); raise or drop data.max_samples")
        return self
