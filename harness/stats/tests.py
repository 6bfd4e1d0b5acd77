"""Paired significance tests between two models scored on the same items: McNemar (0/1 metrics),
paired bootstrap and sign-flip permutation (any metric), Wilcoxon signed-rank (judge scores).

Every function takes the two models' per-item scores `x`, `y` in the same item order and returns
a two-sided p-value for "no difference". Distributions come from scipy where scipy has them; the
resampling tests are vectorised numpy so 10,000 resamples of a 14k-item benchmark take milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from harness.errors import UserError

ArrayLike = Sequence[float] | np.ndarray
# Elements per resampling chunk: bounds memory (32 MiB of float64) whatever n_resamples x n is.
_CHUNK_ELEMENTS = 1 << 22
# Above this many distinct differences, resampling indices beats drawing multinomial counts.
_MAX_MULTINOMIAL_CATEGORIES = 64


class InvalidSample(UserError, ValueError):  # noqa: N818 - reads as "invalid sample: ..."
    """Scores a test cannot take (NaN, unequal lengths, empty, non-binary for McNemar)."""


def paired_arrays(x: ArrayLike, y: ArrayLike, test: str) -> tuple[np.ndarray, np.ndarray]:
    """`x`, `y` as float arrays after the checks every paired test needs."""
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if a.ndim != 1 or b.ndim != 1:
        raise InvalidSample(f"{test}: give two 1-D arrays of per-item scores (got shapes {a.shape} and {b.shape})")
    if a.shape != b.shape:
        raise InvalidSample(f"{test}: paired scores need equal lengths (got {a.size} and {b.size}); "
                            "join the two runs on item id first")
    if a.size == 0:
        raise InvalidSample(f"{test}: no paired items to test")
    for name, values in (("x", a), ("y", b)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise InvalidSample(f"{test}: {name} has {bad.size} NaN or infinite score(s) (first at index {bad[0]}); "
                                "drop unscored items before testing")
    return a, b


def is_binary(values: np.ndarray) -> bool:
    return bool(np.all((values == 0) | (values == 1)))


def discordant_counts(x: ArrayLike, y: ArrayLike) -> tuple[int, int]:
    """(items only x got right, items only y got right): all McNemar looks at."""
    a, b = paired_arrays(x, y, "mcnemar")
    if not (is_binary(a) and is_binary(b)):
        raise InvalidSample("mcnemar: scores must be 0/1 (accuracy, exact match, pass@1); "
                            "use paired_bootstrap or wilcoxon for graded scores")
    return int(np.sum((a == 1) & (b == 0))), int(np.sum((a == 0) & (b == 1)))


def mcnemar(x: ArrayLike, y: ArrayLike) -> float:
    """McNemar's exact test: under H0 each discordant item is a fair coin, so a two-sided binomial test.

    The exact form rather than the chi-square one: benchmarks often have few discordant items.
    """
    from scipy.stats import binomtest

    only_x, only_y = discordant_counts(x, y)
    if only_x + only_y == 0:
        return 1.0
    return float(binomtest(only_x, only_x + only_y, 0.5).pvalue)


def _tolerance(observed: float) -> float:
    # Resampled statistics equal to the observed one must count as "as extreme" despite float
    # rounding in a different summation order (scipy's permutation_test does the same).
    return 1e-9 * max(1.0, abs(observed))


def bootstrap_means(d: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `n_resamples` bootstrap resamples of `d`.

    A resample's mean depends only on how often each distinct value is drawn, so draw those counts
    from a multinomial: the same distribution as resampling indices, but 0/1 and judge-score
    differences have 3 to ~20 distinct values, which makes it thousands of times cheaper.
    Continuous differences (many distinct values) resample indices, which is then faster.
    """
    values, counts = np.unique(d, return_counts=True)
    means = np.empty(n_resamples)
    by_value = values.size <= _MAX_MULTINOMIAL_CATEGORIES
    chunk = max(1, _CHUNK_ELEMENTS // (values.size if by_value else d.size))
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        if by_value:
            draws = rng.multinomial(d.size, counts / d.size, size=size)
            means[start:start + size] = draws @ values / d.size
        else:
            means[start:start + size] = d[rng.integers(0, d.size, size=(size, d.size))].mean(axis=1)
    return means


def _check_resamples(n_resamples: int, test: str) -> None:
    if n_resamples < 1:
        raise InvalidSample(f"{test}: n_resamples must be >= 1 (got {n_resamples})")


def paired_bootstrap(x: ArrayLike, y: ArrayLike, n_resamples: int = 10000, seed: int = 0,
                     confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean of x - y, percentile CI low, CI high, two-sided p-value) from a seeded paired bootstrap.

    The p-value is the shift method (Efron & Tibshirani 1993, sec. 16.4): the bootstrap distribution
    centred on the observed mean stands in for H0, and p = (1 + #{|m* - m| >= |m|}) / (B + 1), never 0.
    One item says nothing about sampling variability, so n = 1 gives the degenerate CI and p = 1.
    """
    a, b = paired_arrays(x, y, "paired_bootstrap")
    _check_resamples(n_resamples, "paired_bootstrap")
    if not 0 < confidence < 1:
        raise InvalidSample(f"paired_bootstrap: confidence must be in (0, 1) (got {confidence})")
    d = a - b
    observed = float(d.mean())
    if d.size == 1:
        return observed, observed, observed, 1.0
    means = bootstrap_means(d, n_resamples, np.random.default_rng(seed))
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    extreme = int(np.sum(np.abs(means - observed) >= abs(observed) - _tolerance(observed)))
    return observed, float(low), float(high), (extreme + 1) / (n_resamples + 1)


def mean_ci(values: ArrayLike, n_resamples: int = 10000, seed: int = 0,
            confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, percentile bootstrap CI low, high) of one model's per-item scores (for error bars)."""
    v = np.asarray(values, dtype=float)
    zeros = np.zeros_like(v)
    mean, low, high, _ = paired_bootstrap(v, zeros, n_resamples, seed, confidence)
    return mean, low, high


def paired_permutation(x: ArrayLike, y: ArrayLike, n_resamples: int = 10000, seed: int = 0) -> float:
    """Two-sided sign-flip permutation test of the mean difference.

    Under H0 each item's difference is as likely to have the other sign. Zero differences cannot
    change the statistic, so they are dropped; with m non-zero differences and 2^m <= n_resamples
    every sign pattern is enumerated (an exact p-value), otherwise the p-value is Monte Carlo,
    (1 + #extreme) / (B + 1).
    """
    a, b = paired_arrays(x, y, "paired_permutation")
    _check_resamples(n_resamples, "paired_permutation")
    d = a - b
    d = d[d != 0]
    if d.size == 0:
        return 1.0
    observed = abs(float(d.sum()))
    threshold = observed - _tolerance(observed)
    if 2 ** d.size <= n_resamples:
        patterns = np.arange(2 ** d.size)[:, None] >> np.arange(d.size) & 1
        sums = (1 - 2 * patterns) @ d
        return float(np.mean(np.abs(sums) >= threshold))
    # Flipping signs within a group of equal |d| only matters through how many are flipped, a
    # Binomial(count, 1/2): sum* = sum_v v * (2k_v - c_v). Same distribution, far fewer draws.
    magnitudes, counts = np.unique(np.abs(d), return_counts=True)
    rng = np.random.default_rng(seed)
    extreme = 0
    chunk = max(1, _CHUNK_ELEMENTS // magnitudes.size)
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        flipped = rng.binomial(counts, 0.5, size=(size, magnitudes.size))
        sums = (2 * flipped - counts) @ magnitudes
        extreme += int(np.sum(np.abs(sums) >= threshold))
    return (extreme + 1) / (n_resamples + 1)


def wilcoxon(x: ArrayLike, y: ArrayLike) -> float:
    """Wilcoxon signed-rank test (scipy): zero differences dropped ("wilcox"), exact null distribution
    for n <= 50 without ties, exhaustive permutations for n <= 13 with ties, else the tie-corrected
    normal approximation. All differences zero: p = 1 (scipy would give NaN).
    """
    import warnings

    from scipy.stats import wilcoxon as scipy_wilcoxon

    a, b = paired_arrays(x, y, "wilcoxon")
    d = a - b
    if not np.any(d != 0):
        return 1.0
    with warnings.catch_warnings():
        # scipy warns that n is small for the normal approximation; the method choice above stands.
        warnings.simplefilter("ignore", UserWarning)
        p = float(scipy_wilcoxon(d, zero_method="wilcox", method="auto").pvalue)
    if math.isnan(p):  # not expected after the all-zero guard; a NaN p-value must never reach a table
        raise InvalidSample("wilcoxon: scipy returned no p-value for these scores")
    return min(p, 1.0)
