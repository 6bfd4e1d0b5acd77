"""Two methods on one benchmark: every applicable test (`atax compare`), and the one test a table's
significance marks use.

Which test a table uses: with >= 3 seeds on both sides, Welch's t-test on the seed-level scores
(training randomness is then the variance that matters); otherwise an item-level test on the
seed-paired items: McNemar's exact test when every item score is 0/1, Wilcoxon signed-rank
otherwise (judge ratings).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.stats.joins import PairedScores, RunRef, paired_scores
from harness.stats.seeds import SeedSummary, seed_test, summarize_seeds
from harness.stats.tests import discordant_counts, mcnemar, paired_bootstrap, paired_permutation, wilcoxon
from harness.store import ResultsStore


@dataclass(frozen=True)
class Verdict:
    name: str
    p_value: float
    detail: str = ""


def default_item_test(paired: PairedScores) -> Verdict:
    """McNemar for 0/1 item scores, Wilcoxon signed-rank for graded ones."""
    if paired.binary:
        only_a, only_b = discordant_counts(paired.x, paired.y)
        return Verdict("mcnemar", mcnemar(paired.x, paired.y), f"discordant {only_a} vs {only_b}")
    return Verdict("wilcoxon", wilcoxon(paired.x, paired.y), f"n={paired.n}")


def cell_test(store: ResultsStore, runs_a: Sequence[RunRef], runs_b: Sequence[RunRef]) -> Verdict:
    """The test behind a table's significance mark for A vs B on one benchmark (see the module doc)."""
    p = seed_test([r.value for r in runs_a], [r.value for r in runs_b])
    if p is not None:
        return Verdict("welch_seeds", p, f"{len(runs_a)} vs {len(runs_b)} seeds")
    return default_item_test(paired_scores(store, runs_a, runs_b))


@dataclass(frozen=True)
class Comparison:
    benchmark: str
    a: str
    b: str
    paired: PairedScores
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    tests: list[Verdict]
    seeds_a: SeedSummary
    seeds_b: SeedSummary
    seed_level: Verdict | None


def compare(store: ResultsStore, runs_a: Sequence[RunRef], runs_b: Sequence[RunRef],
            n_resamples: int = 10000, seed: int = 0) -> Comparison:
    """Every paired test of A vs B on their shared items, plus the seed-level test where it applies."""
    paired = paired_scores(store, runs_a, runs_b)
    x, y = paired.x, paired.y
    diff, low, high, p_boot = paired_bootstrap(x, y, n_resamples, seed)
    tests = []
    if paired.binary:
        only_a, only_b = discordant_counts(x, y)
        tests.append(Verdict("mcnemar (exact)", mcnemar(x, y), f"discordant: {only_a} only A, {only_b} only B"))
    tests += [
        Verdict("paired bootstrap", p_boot, f"{n_resamples} resamples, seed {seed}"),
        Verdict("paired permutation (sign flip)", paired_permutation(x, y, n_resamples, seed),
                    f"{n_resamples} resamples or exact, seed {seed}"),
        Verdict("wilcoxon signed-rank", wilcoxon(x, y), "zero differences dropped"),
    ]
    values_a, values_b = [r.value for r in runs_a], [r.value for r in runs_b]
    p_seeds = seed_test(values_a, values_b)
    seed_level = None if p_seeds is None else Verdict("welch t on seed scores", p_seeds,
                                                           f"{len(values_a)} vs {len(values_b)} seeds")
    return Comparison(paired.benchmark, runs_a[0].row, runs_b[0].row, paired, float(x.mean()), float(y.mean()),
                      diff, low, high, tests, summarize_seeds(values_a), summarize_seeds(values_b), seed_level)


def _seeds_line(name: str, s: SeedSummary) -> str:
    spread = f" ± {s.std:.4f} (sd)" if s.std is not None else ""
    return f"  {name}: {s.mean:.4f}{spread} over {s.n} run(s)"


def format_comparison(c: Comparison) -> str:
    """The plain-text report `atax compare` prints."""
    p = c.paired
    pairs = ", ".join(f"{a.label} ~ {b.label}" for a, b in p.pairs)
    lines = [
        f"{c.benchmark}: A = {c.a}, B = {c.b}",
        f"paired runs: {pairs}",
        f"items: {p.n} paired" + (f"; {p.only_a} only in A, {p.only_b} only in B" if p.only_a or p.only_b else "")
        + (f"; {p.unscored} unscored on one side (left out)" if p.unscored else ""),
        f"mean item score: A {c.mean_a:.4f}, B {c.mean_b:.4f}; A - B = {c.diff:+.4f} "
        f"(95% bootstrap CI {c.ci_low:+.4f} .. {c.ci_high:+.4f})",
        "tests (two-sided p-values, uncorrected):",
    ]
    lines += [f"  {t.name:<32} p = {t.p_value:.4g}" + (f"   [{t.detail}]" if t.detail else "") for t in c.tests]
    lines.append("seed-level scores (stored primary metric):")
    lines += [_seeds_line("A", c.seeds_a), _seeds_line("B", c.seeds_b)]
    if c.seed_level is not None:
        lines.append(f"  {c.seed_level.name:<32} p = {c.seed_level.p_value:.4g}   [{c.seed_level.detail}]")
    else:
        lines.append("  (no seed-level test: it needs >= 3 seeds on both sides)")
    return "\n".join(lines)
