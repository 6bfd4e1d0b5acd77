"""Error-set analyses of K sub-models and their merge on one benchmark (the DTM paper's Figures 8 and 9):
which items each sub-model gets wrong, how those sets overlap, and how the merged model does on
items that k of the K sub-models got wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from harness.errors import UserError


@dataclass(frozen=True)
class ErrorOverlap:
    """Error items by exactly which sub-models got them wrong; shares are of all error items (the union)."""

    models: tuple[str, ...]
    total: int  # items at least one sub-model got wrong
    patterns: dict[frozenset[str], int]  # exactly these models wrong -> number of items

    def share(self, pattern: Set[str]) -> float:
        return self.patterns.get(frozenset(pattern), 0) / self.total if self.total else 0.0

    def unique_share(self, model: str) -> float:
        """Share of error items that only `model` got wrong."""
        return self.share({model})

    @property
    def shared_by_all_share(self) -> float:
        return self.share(set(self.models))


def error_overlap(errors: Mapping[str, Set[str]]) -> ErrorOverlap:
    """Group the union of the sub-models' error items by the exact set of sub-models that missed each."""
    if len(errors) < 2:
        raise UserError(f"error overlap needs at least 2 sub-models (got {len(errors)})")
    models = tuple(errors)
    patterns: dict[frozenset[str], int] = {}
    for item in set().union(*errors.values()):
        pattern = frozenset(m for m in models if item in errors[m])
        patterns[pattern] = patterns.get(pattern, 0) + 1
    return ErrorOverlap(models, sum(patterns.values()), patterns)


@dataclass(frozen=True)
class WrongCountBin:
    wrong: int  # how many sub-models got these items wrong
    n_items: int
    merged_accuracy: float | None  # None for an empty bin


def accuracy_by_wrong_count(submodels: Mapping[str, Mapping[str, float]],
                            merged: Mapping[str, float]) -> list[WrongCountBin]:
    """The merged model's accuracy on items grouped by how many sub-models got them wrong (0..K).

    Scores are 0/1 per item id; only items every sub-model and the merged model answered count.
    """
    if not submodels:
        raise UserError("accuracy by wrong count needs at least one sub-model")
    shared = set(merged).intersection(*(set(s) for s in submodels.values()))
    if not shared:
        raise UserError("the merged model and its sub-models share no scored items")
    k = len(submodels)
    correct = [0] * (k + 1)
    total = [0] * (k + 1)
    for item in shared:
        wrong = sum(1 for scores in submodels.values() if scores[item] < 1)
        total[wrong] += 1
        correct[wrong] += 1 if merged[item] >= 1 else 0
    return [WrongCountBin(w, total[w], correct[w] / total[w] if total[w] else None) for w in range(k + 1)]
