"""From the results store to the inputs of the paired tests: each eval run's primary score, and two
runs' per-item scores joined on item id (refused when the two runs saw different item texts).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.errors import UserError
from harness.store import ItemRecord, ResultsStore, ScoreRow

# When a run does not say which metric is primary, the first of these it has.
_PREFERRED_METRICS = ("acc", "exact_match", "pass@1", "score", "rating", "accuracy")


@dataclass(frozen=True)
class RunRef:
    """One eval run, reduced to its primary metric: a cell of a table before seed aggregation."""

    eval_id: int
    row: str  # the method's row name as recorded (e.g. "dtm", "scaled_vanilla[alpha=0.5]"), else the checkpoint
    checkpoint: str
    seed: int | None
    suite: str
    benchmark: str
    metric: str
    value: float
    stderr: float | None
    n: int | None
    experiment: str | None = None
    run_meta: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def label(self) -> str:
        return f"{self.row}" + (f" seed {self.seed}" if self.seed is not None else "")


def _primary(rows: list[ScoreRow]) -> ScoreRow | None:
    """The run's primary score; None when the run declares a primary metric it has no value for
    (e.g. a judged suite whose every judgment was unusable): such a run has no cell to show."""
    flagged = [r for r in rows if r.meta.get("primary") is True]
    if flagged:
        return flagged[0]
    named = rows[0].run_meta.get("primary_metric") or rows[0].run_meta.get("primary")
    by_metric = {r.metric: r for r in rows}
    if named in by_metric:
        return by_metric[named]
    if named is not None:
        return None
    for metric in _PREFERRED_METRICS:
        if metric in by_metric:
            return by_metric[metric]
    return min(rows, key=lambda r: r.metric)


def _scores_by_eval(store: ResultsStore, experiment: str | None,
                    benchmark: str | None) -> list[tuple[int, list[ScoreRow]]]:
    by_eval: dict[int, list[ScoreRow]] = defaultdict(list)
    for row in store.scores(experiment=experiment, benchmark=benchmark):
        by_eval[row.eval_id].append(row)
    return sorted(by_eval.items())


def primary_runs(store: ResultsStore, *, experiment: str | None = None,
                 benchmark: str | None = None) -> list[RunRef]:
    """Every eval run (of `experiment`, on `benchmark`, if given) with its primary score, by eval id.

    An eval copied to another label (a checkpoint shared by two experiments or rows) is one
    computation: across experiments only its first copy per row and seed counts, so a copy is
    never a second run of the same seed.
    """
    runs, seen = [], set()
    for eval_id, rows in _scores_by_eval(store, experiment, benchmark):
        p = _primary(rows)
        if p is None:
            continue
        row = p.method or p.checkpoint
        computation = (row, p.seed, p.suite, p.benchmark, p.run_meta.get("eval_key") or f"eval:{eval_id}")
        if computation in seen:
            continue
        seen.add(computation)
        runs.append(RunRef(eval_id, row, p.checkpoint, p.seed, p.suite, p.benchmark,
                           p.metric, p.value, p.stderr, p.n, p.experiment, p.run_meta))
    return runs


@dataclass(frozen=True)
class UnscoredRun:
    """An eval run that declares a primary metric it has no value for: a table has no cell for it."""

    row: str
    benchmark: str
    metric: str
    unusable: float | None  # judgments without a usable rating (judged suites), of `judged`
    judged: int | None


def unscored_runs(store: ResultsStore, *, experiment: str | None = None) -> list[UnscoredRun]:
    found = []
    for _, rows in _scores_by_eval(store, experiment, None):
        if _primary(rows) is not None:
            continue
        first, missing = rows[0], next((r for r in rows if r.metric == "n_missing"), None)
        metric = first.run_meta.get("primary_metric") or first.run_meta.get("primary") or "score"
        found.append(UnscoredRun(first.method or first.checkpoint, first.benchmark, str(metric),
                                 missing.value if missing else None, missing.n if missing else None))
    return found


def runs_named(runs: Sequence[RunRef], name: str, benchmark: str) -> list[RunRef]:
    """The runs of method (row) or checkpoint `name` on `benchmark`, by seed."""
    found = [r for r in runs if r.benchmark == benchmark and name in (r.row, r.checkpoint)]
    if not found:
        known = sorted({r.row for r in runs if r.benchmark == benchmark})
        if not known:
            benchmarks = sorted({r.benchmark for r in runs})
            raise UserError(f"no eval runs on benchmark {benchmark!r} in the store; "
                            f"benchmarks there: {', '.join(benchmarks) or 'none'}")
        raise UserError(f"{name!r} has no eval run on {benchmark!r}; evaluated there: {', '.join(known)}")
    return sorted(found, key=lambda r: (r.seed is None, r.seed or 0, r.eval_id))


@dataclass(frozen=True)
class PairedScores:
    """Two models' per-item scores, aligned: x[i] and y[i] are the same item (of the same seed pair)."""

    benchmark: str
    item_ids: list[str]
    x: np.ndarray
    y: np.ndarray
    pairs: list[tuple[RunRef, RunRef]]
    only_a: int = 0  # items scored in a run of A but absent from its partner run of B
    only_b: int = 0
    unscored: int = 0  # shared items without a score on one side (a failed judge call)

    @property
    def n(self) -> int:
        return int(self.x.size)

    @property
    def binary(self) -> bool:
        return bool(np.all(np.isin(self.x, (0.0, 1.0))) and np.all(np.isin(self.y, (0.0, 1.0))))


def _join(a: RunRef, b: RunRef, items_a: list[ItemRecord],
          items_b: list[ItemRecord]) -> tuple[list[str], list[float], list[float], int, int, int]:
    by_id_b = {item.item_id: item for item in items_b}
    ids_a = {item.item_id for item in items_a}
    mismatched = [item.item_id for item in items_a
                  if item.item_id in by_id_b and by_id_b[item.item_id].item_hash != item.item_hash]
    if mismatched:
        shared = len(ids_a & by_id_b.keys())
        raise UserError(
            f"{a.benchmark}: {a.label} and {b.label} were not evaluated on the same items: {len(mismatched)} of "
            f"{shared} shared item ids have different item hashes (first: {mismatched[0]!r}); "
            "re-evaluate both with the same data and prompt version")
    ids, xs, ys, unscored = [], [], [], 0
    for item in items_a:
        other = by_id_b.get(item.item_id)
        if other is None:
            continue
        if item.score is None or other.score is None:
            unscored += 1
            continue
        ids.append(item.item_id)
        xs.append(float(item.score))
        ys.append(float(other.score))
    only_a = len(ids_a - by_id_b.keys())
    only_b = len(by_id_b.keys() - ids_a)
    return ids, xs, ys, only_a, only_b, unscored


def seed_pairs(runs_a: Sequence[RunRef], runs_b: Sequence[RunRef]) -> list[tuple[RunRef, RunRef]]:
    """Runs of A and B paired by equal seed; without any common seed, in seed order (shortest wins).

    The base model has no seed, so it pairs with every seed of the other side.
    """
    if len(runs_a) == 1 and runs_a[0].seed is None:
        return [(runs_a[0], b) for b in runs_b]
    if len(runs_b) == 1 and runs_b[0].seed is None:
        return [(a, runs_b[0]) for a in runs_a]
    by_seed_b = {r.seed: r for r in runs_b}
    common = [(a, by_seed_b[a.seed]) for a in runs_a if a.seed in by_seed_b]
    return common or list(zip(runs_a, runs_b, strict=False))


def paired_scores(store: ResultsStore, runs_a: Sequence[RunRef], runs_b: Sequence[RunRef]) -> PairedScores:
    """Per-item scores of A and B on one benchmark, over their seed pairs (see `seed_pairs`).

    Several seed pairs are stacked: an item of seed pair 1 and the same item of seed pair 2 are two
    observations. Item ids become `seed:id` so they stay unique.
    """
    if not runs_a or not runs_b:
        raise UserError("paired_scores: both sides need at least one eval run")
    pairs = seed_pairs(runs_a, runs_b)
    ids: list[str] = []
    xs: list[float] = []
    ys: list[float] = []
    only_a = only_b = unscored = 0
    for a, b in pairs:
        items_a, items_b = store.items(a.eval_id), store.items(b.eval_id)
        if not items_a or not items_b:
            missing = a if not items_a else b
            raise UserError(f"{missing.benchmark}: {missing.label} has no per-item records; "
                            "paired tests need item-level scores (re-evaluate with a current atax)")
        got = _join(a, b, items_a, items_b)
        prefix = "" if len(pairs) == 1 else f"{a.seed}:"
        ids += [prefix + i for i in got[0]]
        xs += got[1]
        ys += got[2]
        only_a, only_b, unscored = only_a + got[3], only_b + got[4], unscored + got[5]
    if not ids:
        raise UserError(f"{runs_a[0].benchmark}: {runs_a[0].row} and {runs_b[0].row} share no scored items; "
                        "they cannot be compared item by item")
    return PairedScores(runs_a[0].benchmark, ids, np.array(xs), np.array(ys), pairs, only_a, only_b, unscored)
