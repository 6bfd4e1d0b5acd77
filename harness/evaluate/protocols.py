"""The two plug-in interfaces of evaluation, `Backend` and `Suite`, and what a suite hands back.

A backend turns an `EvalTarget` (what to evaluate) into an lm-evaluation-harness `LM`; a suite
prepares its benchmarks (data, task configs) and runs them against that LM. The runner
(`harness.evaluate.runner`) joins the two and writes the store, so neither knows the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from harness.store import ItemRecord, Score

if TYPE_CHECKING:
    from lm_eval.api.model import LM

    from harness.evaluate.target import EvalTarget


class PluginOptions(BaseModel):
    """Base for backend and suite options: unknown keys are errors, as everywhere in the config."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@runtime_checkable
class Backend(Protocol):
    """Makes the model an lm-eval `LM`, the one interface every suite talks to.

    `tasks` maps each lm-eval task name the run will send requests for to its benchmark name;
    most backends ignore it (a backend that replays stored answers needs it to find them).
    `cache_responses` says whether lm-eval's response cache is worth keeping for this backend.
    A backend that runs no model (replayed answers) sets `runs_model = False`: its eval jobs then
    reserve no GPU on a cluster (absent, it counts as True).
    """

    description: ClassVar[str]
    Options: ClassVar[type[BaseModel]]
    cache_responses: ClassVar[bool]

    def make_lm(self, target: EvalTarget, options: Any, tasks: Mapping[str, str]) -> LM: ...


@dataclass(frozen=True)
class BenchmarkResult:
    """One benchmark's outcome, ready for `ResultsStore.record_eval`.

    `meta` holds what the whole benchmark run shares (versions, seeds, data source), `primary`
    names the metric that tables and paired tests use.
    """

    benchmark: str
    primary: str
    scores: list[Score]
    items: list[ItemRecord]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.items)

    def values(self) -> dict[str, float]:
        return {score.metric: score.value for score in self.scores}


@dataclass
class SuiteContext:
    """What a suite may use while running: a progress callback and the run-wide facts to record.

    `on_progress(benchmark, done, total)` is called as requests complete; `log` takes one-line
    notes for the user (shown unless --quiet). The runner sets `target` (what is evaluated: its
    store key, content hash and checkpoint manifest) and `results_dir` (the store) before
    `SuitePlan.run`, for suites that render prompts with the model's training template or cache
    work in the store; `prepare` sees them unset.
    """

    on_progress: Callable[[str, int, int], None] = lambda benchmark, done, total: None
    log: Callable[[str], None] = lambda message: None
    target: EvalTarget | None = None
    results_dir: Path | None = None


@runtime_checkable
class SuitePlan(Protocol):
    """A prepared suite run: data checked and loaded, nothing evaluated yet.

    `tasks` maps lm-eval task name -> benchmark name (the backend may need it).
    """

    tasks: Mapping[str, str]

    def run(self, lm: LM, ctx: SuiteContext) -> list[BenchmarkResult]: ...


@runtime_checkable
class Suite(Protocol):
    """A set of benchmarks run the same way. `prepare` fails fast (bad data, missing opt-ins)
    before any model is loaded; `SuitePlan.run` evaluates."""

    description: ClassVar[str]
    Options: ClassVar[type[BaseModel]]

    def prepare(self, options: Any, ctx: SuiteContext) -> SuitePlan: ...
