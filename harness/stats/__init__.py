"""Paired significance tests between methods on the same items, multiple-comparison corrections,
seed aggregation, and the joins that feed them from the results store.

Imports numpy (not scipy: scipy is imported inside the functions that need it).
"""

from harness.stats.corrections import CORRECTIONS, adjust, benjamini_hochberg, holm
from harness.stats.seeds import MIN_SEEDS_FOR_TEST, SeedSummary, seed_test, summarize_seeds
from harness.stats.tests import (
    InvalidSample,
    discordant_counts,
    mcnemar,
    mean_ci,
    paired_bootstrap,
    paired_permutation,
    wilcoxon,
)

__all__ = [
    "CORRECTIONS",
    "MIN_SEEDS_FOR_TEST",
    "InvalidSample",
    "SeedSummary",
    "adjust",
    "benjamini_hochberg",
    "discordant_counts",
    "holm",
    "mcnemar",
    "mean_ci",
    "paired_bootstrap",
    "paired_permutation",
    "seed_test",
    "summarize_seeds",
    "wilcoxon",
]
