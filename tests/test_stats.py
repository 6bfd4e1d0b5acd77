"""Paired tests, corrections and seed statistics against independent computations: brute-force
enumeration for small n, scipy for the rest, on random and edge-case inputs."""

from __future__ import annotations

import itertools
import math
import statistics
import time
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats as sps

from harness.errors import UserError
from harness.stats import (
    InvalidSample,
    benjamini_hochberg,
    holm,
    mcnemar,
    paired_bootstrap,
    paired_permutation,
    seed_test,
    summarize_seeds,
    wilcoxon,
)
from harness.stats.corrections import adjust
from harness.stats.overlap import accuracy_by_wrong_count, error_overlap

RNG = np.random.default_rng(20240601)


# ---- McNemar -------------------------------------------------------------------------------

def mcnemar_brute(x: list[int], y: list[int]) -> float:
    """Two-sided exact binomial test on the discordant pairs, by summing every outcome as unlikely."""
    b = sum(1 for u, v in zip(x, y, strict=True) if u == 1 and v == 0)
    c = sum(1 for u, v in zip(x, y, strict=True) if u == 0 and v == 1)
    n = b + c
    if n == 0:
        return 1.0
    prob = [Fraction(math.comb(n, k), 2 ** n) for k in range(n + 1)]
    return float(min(Fraction(1), sum(p for p in prob if p <= prob[b])))


@pytest.mark.parametrize("n,p_x,p_y", [(20, 0.5, 0.5), (57, 0.6, 0.4), (300, 0.7, 0.65), (2000, 0.5, 0.52)])
def test_mcnemar_matches_brute_force_on_random_inputs(n: int, p_x: float, p_y: float) -> None:
    for _ in range(3):
        x = (RNG.random(n) < p_x).astype(int).tolist()
        y = (RNG.random(n) < p_y).astype(int).tolist()
        assert mcnemar(x, y) == pytest.approx(mcnemar_brute(x, y), rel=1e-9, abs=1e-12)


def test_mcnemar_edge_cases() -> None:
    assert mcnemar([1, 0, 1], [1, 0, 1]) == 1.0  # all equal: no discordant pair
    assert mcnemar([1] * 10, [0] * 10) == pytest.approx(2 * 0.5 ** 10)  # all different
    assert mcnemar([1], [0]) == 1.0  # n = 1: one discordant pair cannot be significant
    assert mcnemar([1], [1]) == 1.0
    assert mcnemar([1, 0] * 5, [0, 1] * 5) == 1.0  # ties: 5 vs 5 discordant
    assert mcnemar([1] * 8 + [0] * 2, [0] * 8 + [1] * 2) == pytest.approx(mcnemar_brute([1] * 8 + [0] * 2,
                                                                                         [0] * 8 + [1] * 2))


@pytest.mark.parametrize("x,y,message", [
    ([1, float("nan")], [1, 0], "NaN"),
    ([1, 0, 1], [1, 0], "equal lengths"),
    ([], [], "no paired items"),
    ([0.5, 1], [1, 0], "0/1"),
])
def test_mcnemar_rejects_bad_input_with_a_message(x: list[float], y: list[float], message: str) -> None:
    with pytest.raises(InvalidSample, match=message) as info:
        mcnemar(x, y)
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)


# ---- paired bootstrap ----------------------------------------------------------------------

def exact_bootstrap_means(d: np.ndarray) -> np.ndarray:
    """The mean of every one of the n^n equally likely resamples."""
    n = d.size
    return np.array([d[list(idx)].mean() for idx in itertools.product(range(n), repeat=n)])


@pytest.mark.parametrize("case", range(4))
def test_bootstrap_matches_exhaustive_enumeration_for_small_n(case: int) -> None:
    rng = np.random.default_rng(case)
    n = 5 if case < 3 else 6
    x, y = rng.normal(0.5, 1, n).round(2), rng.normal(0, 1, n).round(2)
    diff, low, high, p = paired_bootstrap(x, y)
    means = exact_bootstrap_means(x - y)
    assert diff == pytest.approx((x - y).mean())
    # A Monte Carlo quantile of a discrete distribution: check its CDF position, not its value.
    for q, at in ((0.025, low), (0.975, high)):
        assert np.mean(means <= at + 1e-12) >= q - 0.01
        assert np.mean(means < at - 1e-12) <= q + 0.01
    exact_p = np.mean(np.abs(means - diff) >= abs(diff) - 1e-12)
    assert p == pytest.approx(exact_p, abs=0.015)


def test_bootstrap_ci_matches_scipy_and_p_is_consistent_with_it() -> None:
    x = RNG.normal(0.3, 1.0, 300)
    y = x - RNG.normal(0.15, 0.8, 300)
    diff, low, high, p = paired_bootstrap(x, y, seed=3)
    reference = sps.bootstrap(((x - y),), np.mean, n_resamples=10000, method="percentile", rng=11)
    se = (x - y).std(ddof=1) / math.sqrt(x.size)
    assert low == pytest.approx(reference.confidence_interval.low, abs=0.1 * se)
    assert high == pytest.approx(reference.confidence_interval.high, abs=0.1 * se)
    # With a CI that excludes 0 the shift p-value is small, and both agree with the t-test's verdict.
    assert (low > 0) == (p < 0.05) == (sps.ttest_rel(x, y).pvalue < 0.05)


def test_bootstrap_binary_uses_same_distribution_as_index_resampling() -> None:
    x = (RNG.random(400) < 0.55).astype(float)
    y = (RNG.random(400) < 0.5).astype(float)
    _, low, high, _ = paired_bootstrap(x, y, n_resamples=20000, seed=1)
    d = x - y
    idx = np.random.default_rng(5).integers(0, d.size, (20000, d.size))
    plain = d[idx].mean(axis=1)
    se = d.std(ddof=1) / math.sqrt(d.size)
    assert low == pytest.approx(np.quantile(plain, 0.025), abs=0.1 * se)
    assert high == pytest.approx(np.quantile(plain, 0.975), abs=0.1 * se)


def test_bootstrap_edge_cases_and_seeding() -> None:
    assert paired_bootstrap([1, 0, 1], [1, 0, 1]) == (0.0, 0.0, 0.0, 1.0)  # all equal
    assert paired_bootstrap([3.0], [1.0]) == (2.0, 2.0, 2.0, 1.0)  # n = 1: nothing to resample
    diff, low, high, p = paired_bootstrap([1] * 30, [0] * 30, n_resamples=999)  # all different, no spread
    assert (diff, low, high) == (1.0, 1.0, 1.0) and p == pytest.approx(1 / 1000)
    x, y = RNG.normal(size=50), RNG.normal(size=50)
    assert paired_bootstrap(x, y, seed=4) == paired_bootstrap(x, y, seed=4)
    assert paired_bootstrap(x, y, seed=4) != paired_bootstrap(x, y, seed=5)
    with pytest.raises(InvalidSample, match="NaN"):
        paired_bootstrap([1.0, np.nan], [0.0, 0.0])
    with pytest.raises(InvalidSample, match="n_resamples"):
        paired_bootstrap([1.0, 2.0], [0.0, 0.0], n_resamples=0)


def test_resampling_tests_are_fast_on_a_large_benchmark() -> None:
    x = (RNG.random(14042) < 0.5).astype(float)  # MMLU-sized
    y = (RNG.random(14042) < 0.5).astype(float)
    started = time.perf_counter()
    paired_bootstrap(x, y)
    paired_permutation(x, y)
    paired_bootstrap(RNG.normal(size=3000), RNG.normal(size=3000))  # continuous: index resampling
    assert time.perf_counter() - started < 5.0


# ---- paired permutation --------------------------------------------------------------------

def permutation_brute(d: list[float]) -> float:
    """Every sign pattern of the differences, |sum| at least as extreme as observed."""
    observed = abs(sum(d))
    sums = [abs(sum(s * v for s, v in zip(signs, d, strict=True))) for signs in itertools.product((1, -1), repeat=len(d))]
    return sum(1 for s in sums if s >= observed - 1e-9) / len(sums)


@pytest.mark.parametrize("n", [1, 2, 5, 9, 12])
def test_permutation_exact_matches_enumeration_and_scipy(n: int) -> None:
    for _ in range(3):
        x = RNG.integers(0, 4, n).astype(float)  # small integers: ties and zeros
        y = RNG.integers(0, 4, n).astype(float)
        p = paired_permutation(x, y)
        assert p == pytest.approx(permutation_brute((x - y).tolist()), abs=1e-12)
        if n > 1 and np.any(x != y):  # scipy refuses a single observation
            scipy_p = sps.permutation_test((x - y,), np.mean, permutation_type="samples", n_resamples=10000,
                                           vectorized=True).pvalue
            assert p == pytest.approx(scipy_p, abs=1e-9)


@pytest.mark.parametrize("kind", ["binary", "continuous"])
def test_permutation_monte_carlo_matches_scipy(kind: str) -> None:
    n = 400 if kind == "binary" else 60
    if kind == "binary":
        x, y = (RNG.random(n) < 0.55).astype(float), (RNG.random(n) < 0.5).astype(float)
    else:
        x, y = RNG.normal(0.25, 1, n), RNG.normal(0, 1, n)
    p = paired_permutation(x, y, n_resamples=20000, seed=2)
    scipy_p = sps.permutation_test((x - y,), np.mean, permutation_type="samples", n_resamples=20000,
                                   vectorized=True, rng=9).pvalue
    assert p == pytest.approx(scipy_p, abs=0.02)


def test_permutation_edge_cases() -> None:
    assert paired_permutation([1, 2, 3], [1, 2, 3]) == 1.0  # all equal
    assert paired_permutation([1.0], [0.0]) == 1.0  # n = 1: both sign patterns as extreme
    p = paired_permutation([1] * 30, [0] * 30, n_resamples=999)  # all different: 2^30 patterns, Monte Carlo
    assert p == pytest.approx(1 / 1000)
    assert paired_permutation([1] * 10, [0] * 10) == pytest.approx(2 / 1024)  # exact: only the two all-same-sign
    with pytest.raises(InvalidSample, match="NaN"):
        paired_permutation([np.nan], [0.0])


# ---- Wilcoxon ------------------------------------------------------------------------------

def wilcoxon_brute(d: np.ndarray) -> float:
    """Zeros dropped, midranks of |d|, every sign pattern: two-sided p from the R+ distribution."""
    d = d[d != 0]
    ranks = sps.rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    totals = np.array([ranks[np.array(signs, dtype=bool)].sum()
                       for signs in itertools.product((0, 1), repeat=d.size)])
    low, high = np.mean(totals <= observed + 1e-9), np.mean(totals >= observed - 1e-9)
    return min(1.0, 2 * min(low, high))


def wilcoxon_normal(d: np.ndarray) -> float:
    """The tie-corrected normal approximation, written out (no continuity correction)."""
    d = d[d != 0]
    n = d.size
    ranks = sps.rankdata(np.abs(d))
    r_plus = ranks[d > 0].sum()
    _, counts = np.unique(np.abs(d), return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24 - np.sum(counts ** 3 - counts) / 48
    z = (r_plus - n * (n + 1) / 4) / math.sqrt(var)
    return float(2 * sps.norm.sf(abs(z)))


@pytest.mark.parametrize("n", [3, 6, 10, 13])
def test_wilcoxon_matches_enumeration_for_small_n(n: int) -> None:
    for ties in (False, True):
        x = RNG.integers(1, 6, n).astype(float) if ties else RNG.normal(size=n)
        y = RNG.integers(1, 6, n).astype(float) if ties else RNG.normal(size=n)
        if np.all(x == y):
            continue
        assert wilcoxon(x, y) == pytest.approx(wilcoxon_brute(x - y), abs=1e-9)


def test_wilcoxon_large_n_with_ties_matches_normal_approximation() -> None:
    x = RNG.integers(1, 11, 80).astype(float)  # judge ratings 1..10, MT-bench-sized
    y = np.clip(x + RNG.integers(-2, 3, 80), 1, 10)
    assert wilcoxon(x, y) == pytest.approx(wilcoxon_normal(x - y), rel=1e-9)


def test_wilcoxon_edge_cases() -> None:
    assert wilcoxon([5, 6, 7], [5, 6, 7]) == 1.0  # all equal: scipy would say NaN
    assert wilcoxon([2.0], [1.0]) == 1.0  # n = 1
    assert wilcoxon(list(range(1, 11)), [0] * 10) == pytest.approx(2 / 1024)  # all positive, exact
    with pytest.raises(InvalidSample, match="NaN"):
        wilcoxon([1.0, np.nan], [1.0, 2.0])


# ---- corrections ---------------------------------------------------------------------------

def holm_rejections(p: list[float], alpha: float) -> set[int]:
    """Holm's procedure as stated: step down through sorted p, stop at the first that fails."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    rejected = set()
    for rank, i in enumerate(order):
        if p[i] > alpha / (len(p) - rank):
            break
        rejected.add(i)
    return rejected


@pytest.mark.parametrize("m", [1, 2, 5, 9, 20])
def test_holm_agrees_with_the_step_down_procedure_at_every_level(m: int) -> None:
    for _ in range(5):
        p = (RNG.random(m) ** 3).round(4).tolist()  # skewed to small values, with ties from rounding
        adjusted = holm(p)
        for alpha in (0.001, 0.01, 0.05, 0.1, 0.2, 0.5):
            assert {i for i, a in enumerate(adjusted) if a <= alpha + 1e-12} == holm_rejections(p, alpha)
        assert all(a >= q for a, q in zip(adjusted, p, strict=True)) and max(adjusted) <= 1.0


def test_holm_known_values_and_edges() -> None:
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([]) == []
    assert holm([0.3]) == [0.3]
    assert holm([0.02, 0.02]) == [0.04, 0.04]  # ties
    assert holm([0.9, 1.0]) == [1.0, 1.0]
    with pytest.raises(InvalidSample, match="NaN"):
        holm([0.1, float("nan")])
    with pytest.raises(InvalidSample, match=r"\[0, 1\]"):
        holm([1.5])


def test_benjamini_hochberg_matches_scipy() -> None:
    for m in (1, 3, 9, 40):
        p = (RNG.random(m) ** 2).tolist()
        assert benjamini_hochberg(p) == pytest.approx(sps.false_discovery_control(p, method="bh").tolist())
    assert adjust([0.01, 0.2], "none") == [0.01, 0.2]
    with pytest.raises(InvalidSample, match="unknown correction"):
        adjust([0.1], "bonferonni")


# ---- seeds ---------------------------------------------------------------------------------

def test_seed_summary_matches_statistics_module() -> None:
    values = [50.1, 49.3, 51.0, 50.4]
    s = summarize_seeds(values)
    assert (s.mean, s.std, s.n) == (pytest.approx(statistics.mean(values)), pytest.approx(statistics.stdev(values)), 4)
    assert summarize_seeds([3.0]).std is None
    with pytest.raises(InvalidSample, match="NaN"):
        summarize_seeds([1.0, float("nan")])


def test_seed_test_is_welch_and_needs_three_seeds() -> None:
    a, b = [50.1, 49.3, 51.0, 50.4], [48.0, 48.9, 47.5]
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    assert seed_test(a, b) == pytest.approx(2 * sps.t.sf(abs(t), df), rel=1e-9)
    assert seed_test(a, b[:2]) is None  # two seeds say nothing about spread
    assert seed_test([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]) == 1.0
    assert seed_test([1.0, 1.0, 1.0], [2.0, 2.0, 2.0]) == 0.0


# ---- error-set analyses --------------------------------------------------------------------

def test_error_overlap_and_accuracy_by_wrong_count() -> None:
    errors = {"s1": {"a", "b", "c"}, "s2": {"a", "b", "d"}, "s3": {"a", "e"}}
    overlap = error_overlap(errors)
    assert overlap.total == 5
    assert overlap.shared_by_all_share == pytest.approx(1 / 5)  # "a"
    assert overlap.unique_share("s1") == pytest.approx(1 / 5)  # "c"
    assert overlap.share({"s1", "s2"}) == pytest.approx(1 / 5)  # "b" (exactly s1 and s2)
    assert sum(overlap.patterns.values()) == overlap.total
    items = ["a", "b", "c", "d", "e", "f"]
    subs = {name: {i: 0.0 if i in wrong else 1.0 for i in items} for name, wrong in errors.items()}
    merged = {"a": 0.0, "b": 1.0, "c": 1.0, "d": 0.0, "e": 1.0, "f": 1.0}
    bins = {b.wrong: b for b in accuracy_by_wrong_count(subs, merged)}
    assert (bins[0].n_items, bins[0].merged_accuracy) == (1, 1.0)  # f
    assert (bins[1].n_items, bins[1].merged_accuracy) == (3, pytest.approx(2 / 3))  # c, d, e
    assert (bins[2].n_items, bins[2].merged_accuracy) == (1, 1.0)  # b
    assert (bins[3].n_items, bins[3].merged_accuracy) == (1, 0.0)  # a
    with pytest.raises(UserError, match="at least 2"):
        error_overlap({"only": {"a"}})
