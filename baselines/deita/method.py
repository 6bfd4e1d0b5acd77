"""Deita: train on the samples an LLM scorer rates above a threshold (Liu et al., ICLR 2024).

plan: score every record (complexity of its instruction; optionally quality of its response,
or Deita's evol score complexity × quality), or read precomputed scores from a data column,
and plan one plain SFT run on the samples scoring above the threshold (the DTM paper keeps
complexity > 2.5); combine: identity. The scores go to `deita_scores.jsonl` in the workdir.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from baselines.deita.prompts import ScoreKind, render
from harness.atomic import write_text_atomic
from harness.builtin import resolve_builtin
from harness.checkpoint import Checkpoint
from harness.data.formats import FORMATS, RowError, detect_format
from harness.data.loading import DATA_SUFFIXES, read_file_rows
from harness.data.records import InstructionRecord
from harness.errors import UserError
from harness.method import CombineContext, MethodOptions, PlanContext, RunSpec, only_run
from harness.sources import classify

logger = logging.getLogger(__name__)

COMPLEXITY_SCORER = "hkust-nlp/deita-complexity-scorer"
QUALITY_SCORER = "hkust-nlp/deita-quality-scorer"
REPORT_FILE = "deita_scores.jsonl"

Score = Literal["complexity", "quality", "combined"]
# Each scorer's expected score lies in [1, 6]; the evol score is a product of two of them.
SCORE_RANGES: dict[str, tuple[float, float]] = {"complexity": (1, 6), "quality": (1, 6), "combined": (1, 36)}


class DeitaOptions(MethodOptions):
    scorer: str = Field(COMPLEXITY_SCORER, description="Complexity scorer: hub id, local model directory or "
                                                       "builtin:tiny-llama.")
    quality_scorer: str | None = Field(
        None, description=f"Quality scorer (hub id, local directory or builtin:); unset: off, or {QUALITY_SCORER} "
                          "when `score` needs quality. Set with score: complexity, its scores are reported only.")
    score: Score = Field("complexity", description="Score to filter on: complexity, quality, or combined "
                                                   "(Deita's evol score, complexity × quality).")
    threshold: float = Field(2.5, description="Keep samples whose score is strictly above this; within [1, 6] "
                                              "(combined: [1, 36]). The paper keeps complexity > 2.5.")
    batch_size: int = Field(8, ge=1, description="Prompts per scorer forward pass.")
    max_length: int = Field(2048, ge=16, description="Longest scorer prompt in tokens; longer ones are cut in the "
                                                     "middle, keeping the closing marker.")
    scores_column: str | None = Field(
        None, min_length=1, description="Column of the (local) data file holding precomputed scores for `score`; "
                                        "when set, no scorer model is loaded.")

    @field_validator("threshold")
    @classmethod
    def _threshold_in_range(cls, value: float, info: ValidationInfo) -> float:
        # `score` is declared first, so it is validated and present here unless it was invalid itself.
        score = info.data.get("score", "complexity")
        low, high = SCORE_RANGES[score]
        if not (low <= value <= high):
            raise ValueError(f"must be within [{low:g}, {high:g}] for score '{score}' (got {value:g})")
        return value


class Deita:
    version: ClassVar[str] = "1"  # bump when its behaviour changes: part of the keys of its jobs
    light_steps: ClassVar[frozenset[str]] = frozenset({"combine"})  # the plan runs a scorer model
    description: ClassVar[str] = ("Deita data selection: SFT on the samples an LLM scorer rates above a threshold "
                                  "(complexity > 2.5 by default).")
    Options: ClassVar[type[MethodOptions]] = DeitaOptions

    def __init__(self, options: DeitaOptions) -> None:
        self.options = options

    def plan(self, data: Sequence[Any], ctx: PlanContext) -> list[RunSpec]:
        o = self.options
        records = [_instruction_record(r) for r in data]
        columns = self.score_columns(records, ctx)
        scores = columns[o.score]
        kept = [i for i, s in enumerate(scores) if s > o.threshold]
        write_report(ctx.workdir / REPORT_FILE, columns, kept)
        logger.info("deita: kept %d of %d samples (%s > %g)", len(kept), len(records), o.score, o.threshold)
        if not kept:
            best = f"{max(scores):.4g}" if scores else "none (no samples)"
            raise UserError(f"deita: no sample has a {o.score} score above the threshold {o.threshold:g} (the "
                            f"highest is {best}); lower methods[].options.threshold")
        return [RunSpec(name="main", seed=ctx.seed, indices=tuple(kept))]

    def combine(self, checkpoints: Sequence[Checkpoint], ctx: CombineContext) -> Checkpoint:
        return only_run(checkpoints, "deita")

    def score_columns(self, records: list[InstructionRecord], ctx: PlanContext) -> dict[str, list[float]]:
        """Every score this configuration uses, by name, one value per record."""
        o = self.options
        if o.scores_column is not None:
            return {o.score: column_scores(records, ctx.data_source, o.scores_column)}
        columns: dict[str, list[float]] = {}
        if o.score in ("complexity", "combined"):
            columns["complexity"] = self._model_scores(records, "complexity", o.scorer)
        if o.score in ("quality", "combined") or o.quality_scorer is not None:
            columns["quality"] = self._model_scores(records, "quality", o.quality_scorer or QUALITY_SCORER)
        if o.score == "combined":
            columns["combined"] = [c * q for c, q in zip(columns["complexity"], columns["quality"], strict=True)]
        return columns

    def _model_scores(self, records: list[InstructionRecord], kind: ScoreKind, scorer: str) -> list[float]:
        from baselines.deita.scoring import score_prompts

        prompts = [render(kind, r) for r in records]
        return score_prompts(prompts, scorer, kind, batch_size=self.options.batch_size,
                             max_length=self.options.max_length).scores


def write_report(path: Path, columns: dict[str, list[float]], kept: list[int]) -> None:
    """One JSON line per record: index, every score computed, and whether it was kept."""
    kept_set = set(kept)
    n = len(next(iter(columns.values()), []))
    lines = [json.dumps({"index": i, **{name: values[i] for name, values in columns.items()},
                         "kept": i in kept_set}) for i in range(n)]
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def column_scores(records: list[InstructionRecord], source: str, column: str) -> list[float]:
    """The `column` value of each record, matched by content in the local data source.

    Records may be a seeded subset of the file (max_samples, data_fraction, validation split), so
    rows are matched by (instruction, input, output), not by position; a repeated sample takes
    its first row's value.
    """
    values = _read_column(source, column)
    found = [values.get((r.instruction, r.input, r.output)) for r in records]
    n_missing = sum(v is None for v in found)
    if n_missing:
        raise UserError(f"scores_column: {n_missing} of {len(records)} records have no '{column}' value in "
                        f"{source}; give every row a number in '{column}' or unset scores_column")
    return [float(v) for v in found if v is not None]


def _read_column(source: str, column: str) -> dict[tuple[str, str, str], float]:
    src = classify(source, Path.cwd())
    if src.kind == "hub":
        raise UserError(f"scores_column: reading '{column}' from hub dataset '{source}' is not supported; "
                        "download it to a local JSON/JSONL/parquet file and point data.source at it")
    path = resolve_builtin(source) if src.kind == "builtin" else src.path
    if path is None or not path.exists():
        raise UserError(f"scores_column: data source '{source}' not found; give a local data file")
    files = (sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES)
             if path.is_dir() else [path])
    values: dict[tuple[str, str, str], float] = {}
    fmt: str | None = None
    for file in files:
        for location, row in read_file_rows(file):
            if not isinstance(row, Mapping):
                continue
            # The loader fixes the format from the first row; rows that do not fit it were never records.
            fmt = fmt or detect_format(row)
            if fmt is None or row.get(column) is None:
                continue
            try:
                record = FORMATS[fmt](row)
            except RowError:
                continue
            value = row[column]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise UserError(f"{file}: {location}: '{column}' must be a finite number (got {value!r}); "
                                "fix the row or unset scores_column")
            values.setdefault((record.instruction, record.input, record.output), float(value))
    return values


def _instruction_record(record: Any) -> InstructionRecord:
    if not isinstance(record, InstructionRecord):
        raise UserError(f"deita scores instruction data; got a {type(record).__name__} record")
    return record
