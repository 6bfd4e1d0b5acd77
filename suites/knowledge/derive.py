"""Write the lm-eval task configs one suite run uses: each `include:`s lm-eval's own config.

For every benchmark a YAML file is generated that includes lm-eval's installed config (by
absolute path), then our overlay from `suites/knowledge/overlays/` if any, and overrides only
what the protocol or the data source needs: `num_fewshot`, and for local data `dataset_path`,
`dataset_name`, `dataset_kwargs` and split names (splits the local copy lacks are set to null, so
lm-eval does not look for a train split a 0-shot task never reads). Groups (MMLU, BBH) get one
file per subtask plus a group file with lm-eval's own aggregation.

The directory lives in the atax cache under a hash of its contents, so equal runs share it and
a run's configs stay on disk to be read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.atomic import atomic_dir
from harness.keys import content_key
from harness.paths import cache_dir
from suites.knowledge.benchmarks import Benchmark
from suites.knowledge.layout import LocalFiles

OVERLAYS = Path(__file__).with_name("overlays")
_SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")


@dataclass(frozen=True)
class BenchmarkSource:
    """Where one benchmark's data comes from: the hub (None) or local files, per subset for groups."""

    benchmark: Benchmark
    files: LocalFiles | None = None  # single-task benchmarks
    subset_files: dict[str, LocalFiles | None] | None = None  # groups: subset -> files (None: hub)

    @property
    def subsets(self) -> tuple[str, ...]:
        return tuple(self.subset_files or ())

    def subtask_names(self) -> list[str]:
        if not self.benchmark.subtask_task:
            return [self.benchmark.task]
        return [self.benchmark.subtask_task.format(s) for s in self.subsets]


def lm_eval_tasks_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).resolve().parent / "tasks"


def write_task_dir(sources: list[BenchmarkSource], root: Path | None = None) -> Path:
    """Generate the configs for `sources` and return the directory (reused when identical)."""
    files = {}
    for source in sources:
        files.update(_benchmark_files(source))
    texts = {name: yaml.safe_dump(config, sort_keys=False, allow_unicode=True) for name, config in files.items()}
    out = (root or cache_dir() / "knowledge-tasks") / content_key(texts)
    if not out.is_dir():
        with atomic_dir(out) as tmp:
            for name, text in texts.items():
                (tmp / name).write_text(text, encoding="utf-8")
    return out


def stock_config(relative: str) -> dict[str, Any]:
    """lm-eval's own config (includes merged, `!function` left unresolved)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(lm_eval_tasks_dir() / relative, resolve_func=False)


def _benchmark_files(source: BenchmarkSource) -> dict[str, dict[str, Any]]:
    bench = source.benchmark
    tasks_dir = lm_eval_tasks_dir()
    if not bench.subtask_stock:
        return {f"{bench.task}.yaml": _task_config(bench, tasks_dir / bench.stock, bench.task, source.files)}
    files = {}
    subtasks = []
    for subset, local in (source.subset_files or {}).items():
        name = bench.subtask_task.format(subset)
        files[f"{name}.yaml"] = _task_config(bench, tasks_dir / bench.subtask_stock.format(subset), name, local)
        subtasks.append(name)
    group = stock_config(bench.stock)
    files[f"{bench.task}.yaml"] = {
        "group": bench.task,
        "task": subtasks,
        "aggregate_metric_list": group["aggregate_metric_list"],
        "metadata": group.get("metadata", {}),
    }
    return files


def _task_config(bench: Benchmark, stock: Path, task: str, local: LocalFiles | None) -> dict[str, Any]:
    includes = [str(stock)] + ([str(OVERLAYS / bench.overlay)] if bench.overlay else [])
    config: dict[str, Any] = {"include": includes if len(includes) > 1 else includes[0], "task": task,
                              "num_fewshot": bench.num_fewshot}
    if local is not None:
        config.update(local_data_overrides(stock, local))
    elif bench.hub_config is not None:
        config["dataset_name"] = bench.hub_config  # a variant of the stock task's data (RACE-middle)
    return config


def local_data_overrides(stock: Path, local: LocalFiles) -> dict[str, Any]:
    """The keys that point an lm-eval config at local files instead of the hub."""
    from lm_eval.tasks._yaml_loader import load_yaml

    stock_cfg = load_yaml(stock, resolve_func=False)
    overrides: dict[str, Any] = {"dataset_path": local.builder, "dataset_name": None,
                                 "dataset_kwargs": {"data_files": dict(local.files)}}
    for key in _SPLIT_KEYS:
        split = stock_cfg.get(key)
        if isinstance(split, str) and split not in local.files:
            overrides[key] = None
    return overrides


