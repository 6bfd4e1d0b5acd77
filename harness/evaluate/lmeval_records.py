"""Turn one `lm_eval.simple_evaluate` result into per-benchmark scores and per-item records.

Metric names follow lm-eval's `metric,filter` keys, with the filter dropped where a benchmark has
only one (`acc`, `pass@1`, but `exact_match,strict-match` and `exact_match,flexible-extract` for
GSM8K). One item record per document: its `score` is the primary metric under the primary
filter, the other filters' values and predictions ride along in `extra`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.evaluate.protocols import BenchmarkResult
from harness.store import ItemRecord, Score


@dataclass(frozen=True)
class BenchmarkTasks:
    """A benchmark as lm-eval sees it: one task, or a group (`results_key`) of `tasks`."""

    name: str
    results_key: str
    tasks: Sequence[str]
    primary: str  # metric name as stored, e.g. "acc" or "exact_match,strict-match"

    @property
    def is_group(self) -> bool:
        return len(self.tasks) != 1 or self.tasks[0] != self.results_key


def benchmark_result(results: dict[str, Any], bench: BenchmarkTasks, meta: dict[str, Any]) -> BenchmarkResult:
    """Scores of `bench` from `results["results"]`, items from `results["samples"]`."""
    entry = results["results"].get(bench.results_key)
    if entry is None:
        raise ValueError(f"lm-eval returned no results for {bench.results_key!r} ({bench.name})")
    single_filter = len(_filters(entry)) == 1
    n = sum(int(results["n-samples"][task]["effective"]) for task in bench.tasks)
    scores = []
    for key, value in sorted(entry.items()):
        if "," not in key or key.split(",", 1)[0].endswith("_stderr") or not _is_number(value):
            continue
        metric, filter_name = key.split(",", 1)
        name = metric if single_filter else key
        stderr = entry.get(f"{metric}_stderr,{filter_name}")
        scores.append(Score(name, float(value), float(stderr) if _is_number(stderr) else None, n,
                            {"filter": filter_name, "primary": name == bench.primary}))
    names = {score.metric for score in scores}
    if bench.primary not in names:
        raise ValueError(f"{bench.name}: primary metric {bench.primary!r} not among lm-eval's results {sorted(names)}")
    items = []
    for task in bench.tasks:
        output_type = results["configs"][task].get("output_type", "")
        items.extend(_task_items(results["samples"].get(task, []), task, bench, output_type, single_filter))
    run_meta = {
        **meta,
        "primary_metric": bench.primary,
        "lm_eval_tasks": list(bench.tasks),
        "task_versions": {t: results["versions"].get(t) for t in [*bench.tasks, bench.results_key]},
        "num_fewshot": {t: results["n-shot"].get(t) for t in bench.tasks},
        "task_scores": _task_scores(results, bench) if bench.is_group else {},
    }
    return BenchmarkResult(bench.name, bench.primary, scores, items, run_meta)


def _task_items(samples: list[dict[str, Any]], task: str, bench: BenchmarkTasks, output_type: str,
                single_filter: bool) -> list[ItemRecord]:
    primary_metric, _, primary_filter = bench.primary.partition(",")
    by_doc: dict[int, list[dict[str, Any]]] = {}
    for sample in samples:
        by_doc.setdefault(int(sample["doc_id"]), []).append(sample)
    items = []
    for doc_id, per_filter in sorted(by_doc.items()):
        main = next((s for s in per_filter if s["filter"] == primary_filter), per_filter[0])
        metrics = {}
        predictions = {}
        for sample in per_filter:
            for metric in sample["metrics"]:
                name = metric if single_filter else f"{metric},{sample['filter']}"
                metrics[name] = _plain(sample.get(metric))
            predictions[sample["filter"]] = _prediction(sample, output_type)
        score = _plain(main.get(primary_metric))
        extra: dict[str, Any] = {
            "task": task, "doc_id": doc_id, "filter": main["filter"], "metrics": metrics,
            "prompt_hash": main.get("prompt_hash"), "target_hash": main.get("target_hash"),
        }
        if len(predictions) > 1:
            extra["predictions"] = predictions
        if output_type == "multiple_choice":
            extra["loglikelihoods"] = [float(resp[0]) for resp in main["filtered_resps"]]
        else:
            raw = main["resps"][0][0] if main.get("resps") and main["resps"][0] else None
            if isinstance(raw, str) and raw != predictions[main["filter"]]:
                extra["response"] = raw
        item_id = f"{task}/{doc_id}" if bench.is_group else str(doc_id)
        items.append(ItemRecord(item_id, str(main["doc_hash"]), predictions[main["filter"]],
                                _target(main, output_type), score if isinstance(score, float) else None, extra))
    return items


def _prediction(sample: dict[str, Any], output_type: str) -> str:
    if output_type == "multiple_choice":
        lls = [float(resp[0]) for resp in sample["filtered_resps"]]
        best = max(range(len(lls)), key=lls.__getitem__)
        return str(sample["arguments"][best][1]).strip()
    filtered = sample["filtered_resps"][0] if sample["filtered_resps"] else ""
    # A filter may keep several candidates per document (HumanEval's create_test): the first is greedy's.
    while isinstance(filtered, (list, tuple)):
        filtered = filtered[0] if filtered else ""
    return str(filtered)


def _target(sample: dict[str, Any], output_type: str) -> str:
    target = sample.get("target")
    if output_type == "multiple_choice" and isinstance(target, int) and 0 <= target < len(sample["arguments"]):
        return str(sample["arguments"][target][1]).strip()
    return str(target)


def _task_scores(results: dict[str, Any], bench: BenchmarkTasks) -> dict[str, dict[str, float]]:
    out = {}
    for task in bench.tasks:
        entry = results["results"].get(task, {})
        out[task] = {k: float(v) for k, v in entry.items()
                     if "," in k and "_stderr" not in k and _is_number(v)}
    return out


def _filters(entry: dict[str, Any]) -> set[str]:
    return {key.split(",", 1)[1] for key, value in entry.items()
            if "," in key and "_stderr" not in key.split(",", 1)[0] and _is_number(value)}


def _is_number(value: Any) -> bool:
    try:
        return value is not None and not isinstance(value, (str, bool)) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    """numpy scalars to Python numbers, so they serialise and compare as plain floats."""
    if isinstance(value, bool):
        return float(value)
    if _is_number(value):
        return float(value)
    return value
