"""Tables and comparisons from a real results store (built here with the store's own API, items and
checkpoints included), through the Python API and the `atax table` / `atax compare` CLI.

The store comes from tests/store_fixtures.py (shared with the page tests).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from conftest import run_atax
from store_fixtures import EXPERIMENT, N_ITEMS, build_store, item_scores

from harness.errors import UserError
from harness.report.from_store import TableOptions, build_tables
from harness.report.render import to_markdown
from harness.stats import mcnemar, wilcoxon
from harness.stats.compare import cell_test
from harness.stats.joins import paired_scores, primary_runs, runs_named
from harness.store import EvalRun, ItemRecord, ResultsStore, Score


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("results"))


def test_atax_table_prints_markdown_with_missing_cell_and_marks(store_dir: Path) -> None:
    result = run_atax("table", "--results", str(store_dir), "--experiment", EXPERIMENT, "--reference-method", "vanilla")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "| Method | GSM8K | MMLU | HumanEval |" in out and "| Method | MT-bench | Vicuna-bench |" in out
    assert "| l2 | – | <u>52.00</u> |" in out  # the missing cell, and l2 second on MMLU
    assert "Missing: l2 on GSM8K (no eval run for seed 0)" in out
    assert "| dtm | **21.00** | **62.00**↑ |" in out  # best, and significantly better than vanilla
    assert "| base | 10.00↓ | 40.00↓ |" in out  # base is tested, but never ranked
    assert "Holm correction" in out and "McNemar" in out


def test_seed_aggregation_std_and_missing_seed(tmp_path: Path) -> None:
    rows = {"vanilla": {"mmlu": 0.50}, "dtm": {"mmlu": 0.55, "gsm8k": 0.2}}
    build_store(tmp_path, rows)
    with ResultsStore.open(tmp_path) as store:
        (table,) = build_tables(store, TableOptions(experiment=EXPERIMENT, show_std=True))
        runs = [r for r in primary_runs(store, experiment=EXPERIMENT) if r.row == "vanilla"]
    assert len(runs) == 3
    vanilla = table.row("vanilla").cell("mmlu")
    assert (vanilla.value, vanilla.n_seeds) == (pytest.approx(50.0), 3)
    md = to_markdown(table)
    assert "| dtm | **20.00 ± 0.00** | **55.00 ± 0.00** |" in md
    assert "Missing: vanilla on GSM8K (no eval run for seed 0, seed 1, seed 2)" in md


def test_significance_mark_is_holm_over_the_rows_benchmarks(store_dir: Path) -> None:
    with ResultsStore.open(store_dir) as store:
        knowledge, _ = build_tables(store, TableOptions(experiment=EXPERIMENT, reference_method="vanilla"))
        runs = primary_runs(store, experiment=EXPERIMENT)
        raw = []
        for benchmark in ("gsm8k", "mmlu", "humaneval"):
            dtm, vanilla = runs_named(runs, "dtm", benchmark), runs_named(runs, "vanilla", benchmark)
            paired = paired_scores(store, dtm, vanilla)
            assert [p[0].seed for p in paired.pairs] == [0, 1] and paired.n == 2 * N_ITEMS[benchmark]
            raw.append(mcnemar(paired.x, paired.y))  # the independent recomputation
            assert cell_test(store, dtm, vanilla).p_value == pytest.approx(raw[-1])
    m = len(raw)
    order = sorted(range(m), key=lambda i: raw[i])
    holm, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * raw[i]))
        holm[i] = running
    for benchmark, expected in zip(("gsm8k", "mmlu", "humaneval"), holm, strict=True):
        cell = knowledge.row("dtm").cell(benchmark)
        assert cell.p_value == pytest.approx(expected) and cell.test == "mcnemar"
        assert (cell.significance == "better") == (expected <= 0.05)
    assert knowledge.row("dtm").cell("mmlu").significance == "better"


def test_judge_benchmarks_use_wilcoxon(store_dir: Path) -> None:
    with ResultsStore.open(store_dir) as store:
        runs = primary_runs(store, experiment=EXPERIMENT)
        dtm, vanilla = runs_named(runs, "dtm", "mt_bench"), runs_named(runs, "vanilla", "mt_bench")
        verdict = cell_test(store, dtm, vanilla)
        paired = paired_scores(store, dtm, vanilla)
    assert verdict.name == "wilcoxon" and verdict.p_value == pytest.approx(wilcoxon(paired.x, paired.y))


def test_three_seeds_each_use_the_seed_level_test(tmp_path: Path) -> None:
    from harness.stats import seed_test

    build_store(tmp_path, {"vanilla": {"mmlu": 0.5}, "base": {"mmlu": 0.4}})
    with ResultsStore.open(tmp_path) as store:
        runs = [r for r in primary_runs(store) if r.row == "vanilla"]
        mine = [replace(r, row="other", value=r.value + d) for r, d in zip(runs, (0.03, 0.05, 0.04), strict=True)]
        theirs = [replace(r, value=r.value + d) for r, d in zip(runs, (0.0, 0.01, -0.005), strict=True)]
        verdict = cell_test(store, mine, theirs)
    assert verdict.name == "welch_seeds"
    assert verdict.p_value == pytest.approx(seed_test([r.value for r in mine], [r.value for r in theirs]))
    assert verdict.p_value < 0.05


def test_different_item_hashes_are_refused(tmp_path: Path) -> None:
    build_store(tmp_path, {"vanilla": {"mmlu": 0.5}, "l2": {"mmlu": 0.5}})
    with ResultsStore.open(tmp_path) as store:  # re-evaluate l2 on different item texts
        scores = item_scores("l2", "mmlu", 0)
        items = [ItemRecord(f"mmlu-{i:04d}", f"other-{i}", None, None, float(s)) for i, s in enumerate(scores)]
        store.record_eval(EvalRun("l2-seed0", "knowledge", "mmlu", EXPERIMENT, "l2", 0), [Score("acc", 0.5)], items)
        runs = primary_runs(store)
        with pytest.raises(UserError, match="different item hashes"):
            paired_scores(store, runs_named(runs, "l2", "mmlu"), runs_named(runs, "vanilla", "mmlu"))
    result = run_atax("compare", "l2", "vanilla", "--benchmark", "mmlu", "--results", str(tmp_path))
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "item hashes" in result.stderr
    # The table still prints, and says why the cell has no test.
    table = run_atax("table", "--results", str(tmp_path), "--reference-method", "vanilla")
    assert table.returncode == 0 and "No test for l2 vs vanilla on MMLU" in table.stdout


def test_atax_compare_prints_every_test(store_dir: Path) -> None:
    result = run_atax("compare", "dtm", "vanilla", "--benchmark", "mmlu", "--results", str(store_dir),
                      "--resamples", "2000")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for name in ("mcnemar (exact)", "paired bootstrap", "paired permutation", "wilcoxon signed-rank"):
        assert name in out
    assert "items: 800 paired" in out and "dtm seed 0 ~ vanilla seed 0" in out
    assert "A - B = +0.1200" in out  # 62% vs 50% on the same items of seeds 0 and 1
    assert "no seed-level test" in out  # dtm has two seeds
    with ResultsStore.open(store_dir) as store:
        runs = primary_runs(store)
        paired = paired_scores(store, runs_named(runs, "dtm", "mmlu"), runs_named(runs, "vanilla", "mmlu"))
    p_line = next(line for line in out.splitlines() if "mcnemar" in line)
    assert float(p_line.split("p = ")[1].split()[0]) == pytest.approx(mcnemar(paired.x, paired.y), rel=1e-3)
    missing = run_atax("compare", "dtm", "nobody", "--benchmark", "mmlu", "--results", str(store_dir))
    assert missing.returncode == 2 and "'nobody' has no eval run on 'mmlu'" in missing.stderr


def test_other_formats_columns_and_reference_rows_from_a_store(store_dir: Path) -> None:
    latex = run_atax("table", "--results", str(store_dir), "--experiment", EXPERIMENT, "--format", "latex",
                     "--columns", "mmlu=MMLU (5-shot),gsm8k", "--include-reference", "fu2024", "--std")
    assert latex.returncode == 0, latex.stderr
    assert r"Method & MMLU (5-shot) & GSM8K \\" in latex.stdout
    assert r"dtm & \textbf{62.00 $\pm$ 0.00}" in latex.stdout
    # Reported numbers are shown in italics below a rule, and never take a mark from our rows.
    assert r"\textit{DTM (Ours) [Fu et al. 2024]} & 50.43 & 20.62 \\" in latex.stdout
    csv_out = run_atax("table", "--results", str(store_dir), "--experiment", EXPERIMENT, "--format", "csv")
    assert csv_out.returncode == 0 and csv_out.stdout.splitlines()[0].startswith("row,kind,GSM8K,GSM8K mark")
    assert "Missing: l2 on GSM8K" in csv_out.stderr
    bad = run_atax("table", "--results", str(store_dir), "--reference-method", "nobody")
    assert bad.returncode == 2 and "no row 'nobody'" in bad.stderr
    empty = run_atax("table", "--results", str(store_dir.parent / "nothing-here"))
    assert empty.returncode == 2 and "no results.sqlite" in empty.stderr


def test_a_benchmark_evaluated_without_usable_ratings_is_named_not_dropped(tmp_path: Path) -> None:
    rows = {"vanilla": {"mmlu": 0.50}, "dtm": {"mmlu": 0.55}}
    build_store(tmp_path, rows)
    with ResultsStore.open(tmp_path) as store:
        for key, row, seed, unusable in (("vanilla-seed0", "vanilla", 0, 80), ("dtm-seed0", "dtm", 0, 80),
                                         ("dtm-seed1", "dtm", 1, 79)):
            # A judged suite's run as stored when (nearly) every rating was unusable: no `rating` value.
            run = EvalRun(key, "mt_bench", "mt_bench", EXPERIMENT, row, seed, {"primary_metric": "rating"})
            scores = [Score("n_missing", float(unusable), None, 80)]
            if unusable < 80:
                scores.append(Score("rating", 7.0, None, 1, {"primary": True}))
            store.record_eval(run, scores, [])
        tables = build_tables(store, TableOptions(experiment=EXPERIMENT))
    assert [t.layout for t in tables] == ["knowledge", "instruction"]
    notes = tables[-1].notes
    assert "No rating on mt_bench for vanilla, dtm (2 eval runs without one): 160 of 160 judgments had no usable " \
           "rating; check the judge model and its prompts" in notes
    assert tables[-1].row("dtm").cell("mt_bench").value == pytest.approx(7.0)  # seed 1's run is scored
    result = run_atax("table", "--results", str(tmp_path), "--experiment", EXPERIMENT)
    assert result.returncode == 0, result.stderr
    assert "No rating on mt_bench for vanilla, dtm (2 eval runs without one)" in result.stdout


def test_every_row_without_a_score_is_said_briefly(tmp_path: Path) -> None:
    build_store(tmp_path, {"vanilla": {"mmlu": 0.50}})
    with ResultsStore.open(tmp_path) as store:
        for seed in (0, 1, 2):
            store.record_eval(EvalRun(f"vanilla-seed{seed}", "vicuna_bench", "vicuna_bench", EXPERIMENT, "vanilla",
                                      seed, {"primary_metric": "rating"}), [Score("n_missing", 80.0, None, 80)], [])
        (table,) = build_tables(store, TableOptions(experiment=EXPERIMENT))
    assert table.notes[-1] == ("No rating on vicuna_bench for any row (3 eval runs without one): 240 of 240 "
                               "judgments had no usable rating; check the judge model and its prompts")
