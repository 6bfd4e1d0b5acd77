"""A real results store for report and statistics tests, built with the store's own API (items and
checkpoints included): base, vanilla (3 seeds), l2, dtm (with evaluated sub-models), scaled_vanilla."""

from __future__ import annotations

import json
import sqlite3
import zlib
from pathlib import Path

import numpy as np

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


def item_scores(row: str, benchmark: str, seed: int | None, level: float | None = None) -> np.ndarray:
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


def record_run(store: ResultsStore, key: str, row: str | None, seed: int | None, benchmark: str, scores: np.ndarray,
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
                    record_run(store, key, row, seed, benchmark, item_scores(row, benchmark, seed, level))
        merged = item_scores("dtm", "mmlu", 0)
        rng = np.random.default_rng(7)
        for k in range(4):  # sub-models: each wrong on the merge's errors plus its own few
            sub = merged.copy()
            sub[rng.choice(np.flatnonzero(merged == 1), 20, replace=False)] = 0.0
            key = f"dtm-seed0-sub{k}"
            store.add_checkpoint(key, f"/ckpt/{key}", "lora", "h" + key, _run_manifest("dtm", 0, key, 250))
            # Evaluated on their own (`atax eval`), outside the experiment: not rows of its tables.
            record_run(store, key, None, None, "mmlu", sub, experiment=None)
    return results


def assert_figure(paths: list[Path]) -> None:
    """A PNG and a PDF were written and the PNG shows something."""
    import matplotlib.image as mpimg

    assert sorted(p.suffix for p in paths) == [".pdf", ".png"]
    png, pdf = sorted(paths, key=lambda p: p.suffix != ".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
    pixels = mpimg.imread(png)
    assert pixels.shape[0] > 200 and pixels.std() > 0.05  # something was drawn


def raw_rows(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def item_records(n: int, tag: str = "", size: int = 8) -> list[ItemRecord]:
    return [
        ItemRecord(f"{k:05d}", f"hash-{k}", f"{tag}pred-{k}" + "x" * size, f"target-{k}", k % 2)
        for k in range(n)
    ]
