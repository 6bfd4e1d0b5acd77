"""Tables and comparisons from a real results store (built here with the store's own API, items and
checkpoints included), through the Python API and the `atax table` / `atax compare` CLI.

`build_store` is shared with tests/test_report_page.py.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import run_atax

from harness.errors import UserError
from harness.report.from_store import TableOptions, build_tables
from harness.report.render import to_markdown
from harness.stats import mcnemar, wilcoxon
from harness.stats.compare import cell_test
from harness.stats.joins import paired_scores, primary_runs, runs_named
from harness.store import EvalRun, ItemRecord, ResultsStore, Score

# Accuracy per (row, benchmark); judge means for mt_bench / vicuna_bench.
ACCURACY = {
    "base": {"mmlu": 0.40, "gsm8k": 0.10, "humaneval": 0.10, "mt_bench": 3.0, "vicuna_bench": 3.5},
    "vanilla": {"mmlu": 0.50, "gsm8k": 0.20, "humaneval": 0.15, "mt_bench": 5.0, "vicuna_bench": 6.0},
    "l2": {"mmlu": 0.52, "humaneval": 0.15, "mt_bench": 4.6, "vicuna_bench": 5.8},  # no gsm8k: a missing cell
    "dtm": {"mmlu": 0.62, "gsm8k": 0.21, "humaneval": 0.16, "mt_bench": 5.2, "vicuna_bench": 6.2},
    "scaled_vanilla[alpha=0.5]": {"mmlu": 0.47, "gsm8k": 0.15, "humaneval": 0.12, "mt_bench": 4.2,
                                  "vicuna_bench": 4.8},
    "scaled_vanilla[alpha=1]": {"mmlu": 0.50, "gsm8k": 0.20, "humaneval": 0.15, "mt_bench": 5.0,
                                "vicuna_bench": 6.0},
}
SEEDS = {"base": [None], "vanilla": [0, 1, 2], "l2": [0], "dtm": [0, 1], "scaled_vanilla[alpha=0.5]": [0],
         "scaled_vanilla[alpha=1]": [0]}
EXPERIMENT = "paper"
N_ITEMS = {"mmlu": 400, "gsm8k": 200, "humaneval": 60, "mt_bench": 80, "vicuna_bench": 80}
SUITE = {"mmlu": "knowledge", "gsm8k": "knowledge", "humaneval": "knowledge", "mt_bench": "mt_bench",
         "vicuna_bench": "vicuna_bench"}


def _scores(row: str, benchmark: str, seed: int | None, level: float | None = None) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(f"{row}/{benchmark}/{seed}".encode()))
    n, level = N_ITEMS[benchmark], ACCURACY[row][benchmark] if level is None else level
    if benchmark in ("mt_bench", "vicuna_bench"):  # judge ratings 1..10 around the level
        return np.clip(np.round(rng.normal(level, 1.5, n)), 1, 10)
    exact = np.zeros(n)
    exact[: int(round(level * n))] = 1.0  # exactly the level, so the table's numbers are known
    return rng.permutation(exact)


def _manifest(row: str, seed: int | None, key: str) -> dict:
    base = {"id": "meta-llama/Llama-2-7b-hf", "revision": "main"}
    if row == "base":
        return {"kind": "base", "base_model": base}
    if row.startswith("scaled_vanilla"):
        alpha = row.split("=")[1].rstrip("]")
        return {"kind": "lora", "run_key": key, "base_model": base, "variant": f"alpha={alpha}",
                "scaled_from": {"run_key": f"vanilla-seed{seed}", "alpha": float(alpha)}}
    if row == "dtm":
        return {"kind": "lora", "run_key": key, "base_model": base,
                "merge": {"op": "average", "inputs": [{"run_key": f"dtm-seed{seed}-sub{k}"} for k in range(4)]},
                "provenance": {"method": "dtm", "options": {"k": 4, "dispersal": "random"}}}
    return _run_manifest(row, seed, key, 1000)


def _run_manifest(row: str, seed: int | None, key: str, n_records: int) -> dict:
    return {"kind": "lora", "run_key": key, "base_model": {"id": "meta-llama/Llama-2-7b-hf", "revision": "main"},
            "training": {"lr": 3e-4}, "data": {"n_records": n_records, "fingerprint": "f" * 8},
            "code_version": {"atax": "0.1.0", "engine": 3},
            "provenance": {"experiment": "paper", "method": row, "method_name": row.split("[")[0],
                           "options": {}, "seed": seed, "data": "allenai/tulu-v2-sft-mixture"}}


def _record(store: ResultsStore, key: str, row: str | None, seed: int | None, benchmark: str, scores: np.ndarray,
            experiment: str | None = EXPERIMENT) -> None:
    items = [ItemRecord(f"{benchmark}-{i:04d}", f"hash-{benchmark}-{i}", None, None, float(s))
             for i, s in enumerate(scores)]
    metric = "rating" if SUITE[benchmark] != "knowledge" else ("pass@1" if benchmark == "humaneval" else "acc")
    store.record_eval(EvalRun(key, SUITE[benchmark], benchmark, experiment, row, seed, {"primary_metric": metric}),
                      [Score(metric, float(scores.mean()), None, len(scores), {"primary": True}),
                       Score(metric + "_norm", 0.0, None, len(scores))], items)


def build_store(results: Path, rows: dict[str, dict[str, float]] | None = None) -> Path:
    """A store with base, vanilla (3 seeds), l2 (missing gsm8k), dtm (2 seeds, sub-models evaluated for
    seed 0), and two scaled_vanilla variants, on three knowledge and two judge benchmarks."""
    with ResultsStore.open(results) as store:
        # The experiment lists its methods in the paper's order: the tables follow it (base first).
        methods = [{"name": name} for name in ("vanilla", "l2", "scaled_vanilla", "dtm")]
        store.add_experiment(EXPERIMENT, json.dumps({"methods": methods}))
        for row, benchmarks in (rows or ACCURACY).items():
            for seed in SEEDS[row]:
                key = f"{row}-seed{seed}"
                store.add_checkpoint(key, f"/ckpt/{key}", "lora", "h" + key, _manifest(row, seed, key))
                for benchmark, level in benchmarks.items():
                    _record(store, key, row, seed, benchmark, _scores(row, benchmark, seed, level))
        merged = _scores("dtm", "mmlu", 0)
        rng = np.random.default_rng(7)
        for k in range(4):  # sub-models: each wrong on the merge's errors plus its own few
            sub = merged.copy()
            sub[rng.choice(np.flatnonzero(merged == 1), 20, replace=False)] = 0.0
            key = f"dtm-seed0-sub{k}"
            store.add_checkpoint(key, f"/ckpt/{key}", "lora", "h" + key, _run_manifest("dtm", 0, key, 250))
            # Evaluated on their own (`atax eval`), outside the experiment: not rows of its tables.
            _record(store, key, None, None, "mmlu", sub, experiment=None)
    return results


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
        scores = _scores("l2", "mmlu", 0)
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
