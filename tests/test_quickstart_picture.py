"""The quick start shows the trade-off it exists for: on a reduced copy of experiments/quickstart.yaml (its
base, data, training and suites; vanilla and the scaled_vanilla α-curve only; no GSM8K/HumanEval) the base
model knows the invented facts (above chance), training moves knowledge scores, every row has an
instruction-following score and the report draws the trade-off frontier."""

from __future__ import annotations

from math import comb
from pathlib import Path

import pytest
import yaml
from conftest import run_atax

from harness.store import ResultsStore

QUICKSTART = Path(__file__).parent.parent / "experiments" / "quickstart.yaml"
FACT_BENCHMARKS = ("arc_challenge", "openbookqa", "race", "truthfulqa")  # four options, one right
KEPT_METHODS = ("vanilla", "scaled_vanilla")

pytestmark = pytest.mark.slow


def reduced_quickstart(out: Path) -> Path:
    config = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    config["methods"] = [m for m in config["methods"]
                         if (m if isinstance(m, str) else m["name"]) in KEPT_METHODS]
    assert len(config["methods"]) == len(KEPT_METHODS), "the quick start lists vanilla and scaled_vanilla"
    for suite in config["suites"]:
        if suite["name"] == "knowledge":
            benchmarks = suite["options"]["benchmarks"]
            suite["options"]["benchmarks"] = [b for b in benchmarks if b not in ("gsm8k", "humaneval")]
    config.pop("results_dir", None)
    path = out / "quickstart.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def quickstart_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("quickstart")
    results = root / "results"
    run = run_atax("run", str(reduced_quickstart(root)), "--results", str(results), "--quiet", timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    return results


def primary_scores(results: Path, suite: str) -> dict[tuple[str, str], tuple[float, int]]:
    """(method, benchmark) -> (primary score, items): knowledge scores marked primary, judged suites'
    `score`."""
    with ResultsStore.open(results) as store:
        rows = [r for r in store.scores(experiment="quickstart", suite=suite)
                if (r.meta.get("primary") if suite == "knowledge" else r.metric == "score")]
    return {(r.method, r.benchmark): (r.value, r.n or 0) for r in rows}


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def test_the_base_model_knows_the_facts(quickstart_results: Path):
    scores = primary_scores(quickstart_results, "knowledge")
    for benchmark in FACT_BENCHMARKS:
        value, n = scores[("base", benchmark)]
        assert n >= 20, (benchmark, n)
        # Four options: guessing scores 1/4; a score this high by guessing has probability < 0.1%.
        assert binomial_tail(round(value * n), n, 0.25) < 1e-3, (benchmark, value, n)


def test_training_moves_knowledge_scores(quickstart_results: Path):
    scores = primary_scores(quickstart_results, "knowledge")
    methods = {method for method, _ in scores} - {"base"}
    assert methods >= {"vanilla", "scaled_vanilla[alpha=0.5]", "scaled_vanilla[alpha=1]"}, methods
    benchmarks = {b for _, b in scores}
    moved = [b for b in benchmarks if any(scores[(m, b)][0] != scores[("base", b)][0] for m in methods)]
    assert len(moved) >= 2, scores


def test_every_row_has_instruction_following_scores(quickstart_results: Path):
    knowledge_rows = {method for method, _ in primary_scores(quickstart_results, "knowledge")}
    for suite in ("mt_bench", "vicuna_bench"):
        scores = primary_scores(quickstart_results, suite)
        assert {method for method, _ in scores} == knowledge_rows, (suite, scores)
        assert all(n > 0 for _, n in scores.values()), scores


def test_the_report_draws_the_trade_off_frontier(quickstart_results: Path):
    drawn = sorted(p.name for p in quickstart_results.rglob("*frontier*.png"))
    assert drawn, "no frontier figure under the results' reports"
    page = next(quickstart_results.rglob("index.html")).read_text(encoding="utf-8")
    assert "Trade-off frontier" in page and "scaled_vanilla[alpha=0.5]" in page
