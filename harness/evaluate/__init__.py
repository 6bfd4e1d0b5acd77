"""Evaluation: backends make a model an lm-eval LM, suites run benchmarks on it, the runner
records every score and item in the store.

Import-cheap on purpose (no torch, no lm_eval): the CLI imports this for `--help`.
"""

from harness.evaluate.protocols import Backend, BenchmarkResult, PluginOptions, Suite, SuiteContext, SuitePlan
from harness.evaluate.target import EvalTarget, resolve_target

__all__ = ["Backend", "BenchmarkResult", "EvalTarget", "PluginOptions", "Suite", "SuiteContext", "SuitePlan",
           "resolve_target"]
