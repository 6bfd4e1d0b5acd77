"""The knowledge suite: the paper's nine benchmarks, run through lm-evaluation-harness in one
`simple_evaluate` call per checkpoint, so the model is loaded once.

`prepare` does everything that can fail without a model: benchmark names, the code opt-in, the
local data layout, generating task configs and loading every dataset. `KnowledgePlan.run` then
evaluates and turns lm-eval's output into scores and item records.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator, model_validator

from harness.errors import UserError
from harness.evaluate.protocols import BenchmarkResult, PluginOptions, SuiteContext
from harness.report.table import Column, PaperTable
from suites.knowledge import template_cache
from suites.knowledge.benchmarks import BENCHMARKS, DEFAULT_BENCHMARKS

if TYPE_CHECKING:
    from lm_eval.api.model import LM

    from suites.knowledge.derive import BenchmarkSource

logger = logging.getLogger(__name__)
# lm-eval's own default, recorded with every score; every few-shot sampler here is first_n anyway.
FEWSHOT_SEED = 1234


class KnowledgeOptions(PluginOptions):
    benchmarks: list[str] = Field(list(DEFAULT_BENCHMARKS), min_length=1, description=(
        f"Benchmarks to run (default: the nine). Also: {', '.join(b for b in BENCHMARKS if b not in DEFAULT_BENCHMARKS)}."))
    limit: int | None = Field(None, ge=1, description="At most this many items per lm-eval task (MMLU and BBH: "
                                                     "per subject/task); for quick checks, not for reported numbers.")
    data_dir: Path | None = Field(None, description="Read every benchmark from this local directory (hub schema; "
                                                    "README 'Knowledge suite data') instead of the hub; "
                                                    "`builtin:toy-knowledge` = invented items for offline runs.")
    allow_code_execution: bool = Field(False, description="Run model-written code (HumanEval, MBPP) in the sandbox.")
    max_gen_toks: int | None = Field(None, ge=1, description="Cap new tokens of every generation benchmark (quick "
                                                           "runs on CPU; changes scores, recorded with them).")
    allow_partial: bool = Field(False, description="With data_dir: run MMLU/BBH on the subjects/tasks present "
                                                   "(recorded) instead of refusing an incomplete copy.")
    primary_metrics: dict[str, str] = Field({}, description=(
        "Benchmark -> the stored metric tables and paired tests use instead of its default, e.g. "
        "{arc_challenge: acc_norm} (ARC-c and OpenBookQA offer acc_norm; chosen before looking at results)."))

    @field_validator("data_dir", mode="before")
    @classmethod
    def _builtin_data(cls, value: Any) -> Any:
        from suites.knowledge.toy_data import TOY_DATA, toy_data_dir

        return toy_data_dir() if str(value) == TOY_DATA else value

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return [b.strip() for b in value.split(",") if b.strip()] if isinstance(value, str) else value

    @field_validator("benchmarks")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in BENCHMARKS:
                raise ValueError(f"unknown benchmark '{name}'; known: {', '.join(BENCHMARKS)}")
        if len(set(names)) != len(names):
            raise ValueError("a benchmark is listed twice")
        return names

    @model_validator(mode="after")
    def _primary_metrics_offered(self) -> KnowledgeOptions:
        for name, metric in self.primary_metrics.items():
            if name not in self.benchmarks:
                run = ", ".join(self.benchmarks)
                raise ValueError(f"primary_metrics: '{name}' is not among the benchmarks run ({run})")
            bench = BENCHMARKS[name]
            if metric not in (bench.primary, *bench.alternatives):
                offered = ", ".join((bench.primary, *bench.alternatives))
                raise ValueError(f"primary_metrics: {name} offers {offered}, not '{metric}'")
        return self


class KnowledgeSuite:
    version: ClassVar[str] = "1"  # bump when its behaviour changes: part of the keys of its jobs
    description: ClassVar[str] = ("The nine knowledge benchmarks of the paper (GSM8K, MMLU, BBH, ARC-C, OpenBookQA, "
                                  "RACE, TruthfulQA, HumanEval, MBPP) through lm-evaluation-harness.")
    Options: ClassVar[type[KnowledgeOptions]] = KnowledgeOptions
    # The paper's Table 1 columns, in its order (the report reads this through the registry).
    paper_table: ClassVar[PaperTable] = PaperTable("knowledge", "Knowledge and reasoning (Table 1 layout)", (
        Column("gsm8k", "GSM8K", scale=100),
        Column("mmlu", "MMLU", scale=100),
        Column("bbh", "BBH", scale=100),
        Column("arc_challenge", "ARC-c", scale=100, aliases=("arc_c", "arc-challenge")),
        Column("openbookqa", "OBQA", scale=100, aliases=("obqa",)),
        Column("race", "RACE", scale=100),
        Column("humaneval", "HumanEval", scale=100),
        Column("mbpp", "MBPP", scale=100),
        Column("truthfulqa", "TruthfulQA", scale=100, aliases=("truthfulqa_mc1",)),
    ), position=1)

    def prepare(self, options: KnowledgeOptions, ctx: SuiteContext) -> KnowledgePlan:
        benchmarks = [BENCHMARKS[name] for name in options.benchmarks]
        code = [b.name for b in benchmarks if b.code]
        if code and not options.allow_code_execution:
            raise UserError(f"{', '.join(code)} run model-written code; pass --allow-code-execution to run it in "
                            "the sandbox, or leave them out with --benchmarks")
        if code:
            from harness.sandbox import sandbox_level

            sandbox_level()  # refuses here, before a model loads, where no sandbox level may run the code
        from suites.knowledge.data import sources_for

        sources, data_meta = sources_for(benchmarks, options.data_dir, options.allow_partial, ctx.log)
        return KnowledgePlan.load(sources, options, data_meta, ctx)

    # ---- local data (atax data pull / convert / check) ----------------------------------------

    def pull_data(self, to_dir: Path, benchmarks: list[str] | None, log: Any) -> list[Path]:
        from suites.knowledge.data import pull

        return pull(to_dir, _datasets(benchmarks), log)

    def convert_data(self, dataset: str, source: Path, to_dir: Path) -> list[Path]:
        from suites.knowledge.originals import convert

        return convert(dataset, source, to_dir)

    def check_data(self, data_dir: Path, benchmarks: list[str] | None, allow_partial: bool = False) -> list[str]:
        from suites.knowledge.layout import check_data_dir

        return check_data_dir(data_dir, _datasets(benchmarks), allow_partial).problems

    def check_data_report(self, data_dir: Path, benchmarks: list[str] | None,
                          allow_partial: bool = False) -> tuple[list[str], list[str], list[str]]:
        """(problems, one line per dataset split, the splits that are not the complete release)."""
        from suites.knowledge.layout import check_data_dir

        check = check_data_dir(data_dir, _datasets(benchmarks), allow_partial)
        lines = [f"{name} {split}: {record['text']}" for name, splits in check.completeness.items()
                 for split, record in splits.items()]
        return check.problems, lines, check.partial()


def _datasets(benchmarks: list[str] | None) -> list[str]:
    names = KnowledgeOptions(benchmarks=benchmarks).benchmarks if benchmarks else list(DEFAULT_BENCHMARKS)
    return list(dict.fromkeys(BENCHMARKS[name].dataset for name in names))


@dataclass
class KnowledgePlan:
    """Loaded lm-eval tasks, ready to run against any LM."""

    tasks: dict[str, str]  # lm-eval task -> benchmark
    options: KnowledgeOptions
    sources: list[BenchmarkSource]
    objects: list[Any]  # lm-eval Task / Group objects, in benchmark order
    task_dir: Path
    manager: Any  # the TaskManager over task_dir (simple_evaluate would index all of lm-eval's 14k configs)
    data_meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, sources: list[BenchmarkSource], options: KnowledgeOptions, data_meta: dict[str, Any],
             ctx: SuiteContext) -> KnowledgePlan:
        from lm_eval.tasks import TaskManager

        from suites.knowledge.code_metric import preload_lm_eval_code_modules
        from suites.knowledge.derive import write_task_dir
        from suites.knowledge.download_counts import no_download_counts

        if any(s.benchmark.code for s in sources):
            preload_lm_eval_code_modules()
        template_cache.install()
        task_dir = write_task_dir(sources)
        manager = TaskManager(include_defaults=False, include_path=str(task_dir))
        objects, tasks = [], {}
        with no_download_counts(local_data=options.data_dir is not None):
            for source in sources:
                bench = source.benchmark
                ctx.log(f"{bench.name}: loading {data_meta[bench.name]['source']}")
                try:
                    loaded = manager.load([bench.task])
                except UserError:
                    raise
                except Exception as exc:  # datasets / lm-eval raise many types for unreachable or malformed data
                    raise UserError(_load_error(bench.name, options.data_dir, exc)) from exc
                objects.append(loaded["groups"][bench.task] if bench.task in loaded["groups"]
                               else loaded["tasks"][bench.task])
                tasks.update({name: bench.name for name in source.subtask_names()})
                from suites.knowledge.data import scored_completeness

                data_meta[bench.name]["completeness"] = scored_completeness(
                    bench, source.subtask_names(), loaded["tasks"], options.limit)  # stored with the scores
        return cls(tasks, options, sources, objects, task_dir, manager, data_meta)

    def run(self, lm: LM, ctx: SuiteContext) -> list[BenchmarkResult]:
        import lm_eval

        from harness.evaluate.lmeval_records import BenchmarkTasks, benchmark_result
        from suites.knowledge.code_metric import EXECUTIONS, code_execution_scope

        EXECUTIONS.clear()
        gen_kwargs = {"max_gen_toks": self.options.max_gen_toks} if self.options.max_gen_toks else None
        code = any(source.benchmark.code for source in self.sources)
        # Model-written code may run during this evaluation only (the opt-in was checked in prepare).
        with code_execution_scope() if code else contextlib.nullcontext() as sandbox_level:
            results = lm_eval.simple_evaluate(
                model=lm, tasks=list(self.objects), limit=self.options.limit, gen_kwargs=gen_kwargs,
                log_samples=True, confirm_run_unsafe_code=self.options.allow_code_execution,
                fewshot_random_seed=FEWSHOT_SEED, task_manager=self.manager)
        if results is None:  # a non-zero rank in a distributed run: rank 0 records
            return []
        config = results.get("config", {})
        shared = {"suite_options": self.options.model_dump(mode="json"), "lm_eval_version": lm_eval.__version__,
                  "limit": self.options.limit, "max_gen_toks": self.options.max_gen_toks,
                  "seeds": {k: config.get(k) for k in ("random_seed", "numpy_seed", "torch_seed", "fewshot_seed")},
                  "task_dir": str(self.task_dir)}
        out = []
        for source in self.sources:
            bench = source.benchmark
            meta = {**shared, "data": self.data_meta[bench.name], "protocol": bench.note,
                    **({"table_note": bench.table_note} if bench.table_note else {})}
            primary = self.options.primary_metrics.get(bench.name, bench.primary)
            result = benchmark_result(results, BenchmarkTasks(bench.name, bench.task, source.subtask_names(),
                                                              primary), meta)
            out.append(_with_executions(result, sandbox_level) if bench.code else result)
        return out


def _with_executions(result: BenchmarkResult, sandbox_level: str | None) -> BenchmarkResult:
    """Add how the sandbox ended each item's (greedy) program, the counts and the sandbox level."""
    from suites.knowledge.code_metric import EXECUTIONS, program_key

    items = [replace(item, extra={**item.extra, "execution": EXECUTIONS.get(
        program_key(f"{item.prediction}\n{item.target}"), "unknown")}) for item in result.items]
    counts = Counter(item.extra["execution"] for item in items)
    return replace(result, items=items, meta={**result.meta, "code_execution": dict(sorted(counts.items())),
                                              "sandbox_level": sandbox_level})


def _load_error(benchmark: str, data_dir: Path | None, exc: Exception) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0][:300] if text else type(exc).__name__
    if data_dir is None:
        return (f"{benchmark}: cannot load its data from the hub ({type(exc).__name__}: {first}); offline, pass "
                "--data-dir DIR with local copies (README 'Knowledge suite data'; `atax data pull` writes them)")
    return (f"{benchmark}: lm-eval cannot read its files under {data_dir} ({type(exc).__name__}: {first}); "
            f"check them with `atax data check {data_dir}`")
