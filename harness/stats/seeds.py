"""Across training seeds: mean and standard deviation of a method's scores, and a test between two
methods on their seed-level scores (only with at least 3 seeds each: fewer say nothing about spread).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.stats.tests import InvalidSample

MIN_SEEDS_FOR_TEST = 3


@dataclass(frozen=True)
class SeedSummary:
    """A method's score over seeds; `std` is the sample standard deviation (ddof=1), None for one seed."""

    mean: float
    std: float | None
    n: int


def _seed_array(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size == 0:
        raise InvalidSample(f"{what}: give a non-empty flat list of seed-level scores")
    if not np.all(np.isfinite(v)):
        raise InvalidSample(f"{what}: a seed-level score is NaN or infinite; re-evaluate that seed")
    return v


def summarize_seeds(values: Sequence[float] | np.ndarray) -> SeedSummary:
    v = _seed_array(values, "summarize_seeds")
    std = float(np.std(v, ddof=1)) if v.size > 1 else None
    return SeedSummary(float(v.mean()), std, int(v.size))


def seed_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float | None:
    """Welch's t-test on seed-level scores; None when either side has fewer than 3 seeds.

    Unpaired and unequal-variance: seed s of one method and seed s of another share a number, not
    a training run, so nothing pairs them, and methods differ in how much seeds move them.
    Both sides without spread: the test's limit, p = 1 for equal means and 0 otherwise.
    """
    from scipy.stats import ttest_ind

    va = _seed_array(a, "seed_test")
    vb = _seed_array(b, "seed_test")
    if va.size < MIN_SEEDS_FOR_TEST or vb.size < MIN_SEEDS_FOR_TEST:
        return None
    if np.ptp(va) == 0 and np.ptp(vb) == 0:
        return 1.0 if va[0] == vb[0] else 0.0
    with warnings.catch_warnings():
        # scipy warns of precision loss when one side has (almost) no spread; Welch's test is still defined.
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(ttest_ind(va, vb, equal_var=False).pvalue)
    return 1.0 if math.isnan(p) else p
