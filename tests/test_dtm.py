"""Disperse-Then-Merge: dispersal properties, the method end to end on the tiny model, and its options."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import yaml
from conftest import run_atax

from dtm_method.dispersal import disperse, kmeans_clusters, random_clusters
from harness.config import DataConfig, load_experiment
from harness.data import load_instruction_data
from harness.errors import UserError
from harness.merge.adapters import read_adapter


@pytest.mark.parametrize("n,k", [(10, 3), (100, 4), (7, 7), (1000, 6)])
def test_random_dispersal_is_disjoint_covering_balanced_and_seeded(n, k):
    labels = random_clusters(n, k, seed=5)
    assert len(labels) == n  # every sample has exactly one cluster: disjoint and covering
    sizes = Counter(labels)
    assert set(sizes) == set(range(k)) and max(sizes.values()) - min(sizes.values()) <= 1
    assert random_clusters(n, k, seed=5) == labels
    assert n < 8 or random_clusters(n, k, seed=6) != labels


def test_kmeans_empty_cluster_is_an_error():
    points = np.ones((6, 4), dtype=np.float32)  # six identical points cannot fill three clusters
    with pytest.raises(UserError, match=r"k-means with k=3 on toy.jsonl left cluster\(s\) \[.*\] empty"):
        kmeans_clusters(points, 3, seed=0, source="toy.jsonl")


def test_kmeans_separates_obvious_groups():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal([5, 0, 0], 0.1, (20, 3)), rng.normal([0, 5, 0], 0.1, (20, 3))])
    labels = kmeans_clusters(points.astype(np.float32), 2, seed=0)
    assert len(set(labels[:20])) == 1 and len(set(labels[20:])) == 1 and labels[0] != labels[-1]


@pytest.mark.realdata
@pytest.mark.parametrize("encode", ["instruction", "response", "both"])
def test_kmeans_on_real_instructions_gives_k_nonempty_clusters(shared_data, encode):
    records = load_instruction_data(DataConfig(source=str(shared_data / "instructions" / "alpaca_data_1k.json"),
                                               max_samples=200)).records
    labels = disperse(records, 4, "kmeans", seed=0, encode=encode)
    assert sorted(Counter(labels)) == [0, 1, 2, 3]


def experiment(tmp_path, **dtm_options) -> str:
    exp = {"name": "dtm-test", "base_model": {"id": "builtin:tiny-llama"},
           "data": {"source": "builtin:toy-instructions", "max_samples": 80},
           "training": {"batch_size": 8, "max_seq_len": 192, "max_steps": 3, "scheduler": {"warmup_steps": 1},
                        "optimizer": {"lr": 1e-2}},
           "methods": [{"name": "dtm", "options": dtm_options}], "results_dir": "res"}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    return str(path)


@pytest.mark.parametrize("k", [2, 4])
def test_train_dtm_gives_a_merged_lora(tmp_path, k):
    result = run_atax("train", "--config", experiment(tmp_path, k=k), "--method", "dtm", "--quiet")
    assert result.returncode == 0, result.stderr
    merged_dir = tmp_path / "res" / "checkpoints" / "dtm-seed0"
    manifest = json.loads((merged_dir / "checkpoint.json").read_text())
    assert manifest["kind"] == "lora" and manifest["merge"]["op"] == "average"
    assert len(manifest["merge"]["inputs"]) == k
    assert read_adapter(merged_dir).rank == 16 * k
    assignments = [json.loads(x) for x in (tmp_path / "res" / "work" / "dtm-seed0" / "assignments.jsonl")
                   .read_text().splitlines()]
    assert len(assignments) == 80 and Counter(a["cluster"] for a in assignments) == Counter(
        {c: 80 // k for c in range(k)})
    runs = [json.loads(p.read_text()) for p in (tmp_path / "res" / "runs").glob("*/checkpoint.json")]
    assert sorted(r["data"]["n_records"] for r in runs) == [80 // k] * k
    assert len({r["run"]["init_seed"] for r in runs}) == 1  # same_init is the default


def test_dtm_different_inits_and_dense_merge(tmp_path):
    result = run_atax("train", "--config", experiment(tmp_path, k=2, same_init=False,
                                                      merge={"name": "ties", "params": {"density": 0.5}}),
                      "--method", "dtm", "--quiet")
    assert result.returncode == 0, result.stderr
    runs = [json.loads(p.read_text()) for p in (tmp_path / "res" / "runs").glob("*/checkpoint.json")]
    assert len({r["run"]["init_seed"] for r in runs}) == 2
    manifest = json.loads((tmp_path / "res" / "checkpoints" / "dtm-seed0" / "checkpoint.json").read_text())
    assert manifest["kind"] == "dense" and manifest["merge"]["params"] == {"density": 0.5}


def test_dtm_fisher_merge(tmp_path):
    result = run_atax("train", "--config", experiment(tmp_path, k=2, merge={"name": "fisher"}, fisher_samples=8),
                      "--method", "dtm", "--quiet")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "res" / "checkpoints" / "dtm-seed0" / "checkpoint.json").read_text())
    assert manifest["kind"] == "dense" and manifest["merge"]["op"] == "fisher"


def test_changing_only_the_merge_retrains_nothing(tmp_path):
    assert run_atax("train", "--config", experiment(tmp_path, k=2), "--method", "dtm", "--quiet").returncode == 0
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "res" / "runs").glob("*/checkpoint.json")}
    result = run_atax("train", "--config", experiment(tmp_path, k=2, merge={"name": "task_arithmetic",
                                                                            "params": {"scale": 0.5},
                                                                            "lora_rank": 8}),
                      "--method", "dtm", "--quiet")
    assert result.returncode == 0, result.stderr
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "res" / "runs").glob("*/checkpoint.json")} == stamps
    manifest = json.loads((tmp_path / "res" / "checkpoints" / "dtm-seed0" / "checkpoint.json").read_text())
    assert manifest["kind"] == "lora" and manifest["merge"]["lora_rank"] == 8
    assert read_adapter(tmp_path / "res" / "checkpoints" / "dtm-seed0").rank == 8


@pytest.mark.parametrize("options,message", [
    ({"k": 1}, "methods[0].options.k: must be >= 2 (got 1)"),
    ({"k": 3, "weights": [0.5, 0.5]}, "methods[0].options: weights: 2 given for k=3; give one per sub-model"),
    ({"merge": {"name": "slerp"}}, "methods[0].options.merge.name: unknown merge operator 'slerp'; known: average"),
    ({"merge": {"name": "ensemble", "lora_rank": 8}},
     "methods[0].options.merge: lora_rank: merge 'ensemble' is not re-factorised; remove lora_rank"),
    ({"merge": {"name": "ties", "lora_rank": 0}}, "methods[0].options.merge.lora_rank: must be >= 1 (got 0)"),
    ({"dispersal": "hash"}, "methods[0].options.dispersal: must be one of 'random' or 'kmeans' (got 'hash')"),
])
def test_bad_dtm_options(tmp_path, options, message):
    with pytest.raises(UserError) as info:
        load_experiment(experiment(tmp_path, **options))
    assert message in str(info.value)


def test_cli_disperse(tmp_path):
    out = tmp_path / "assign.jsonl"
    result = run_atax("disperse", "builtin:toy-instructions", "--k", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"600 samples -> 3 clusters of sizes [200, 200, 200]; wrote {out}"
    bad = run_atax("disperse", "builtin:toy-instructions", "--k", "3", "--strategy", "spectral", "--out", str(out))
    assert bad.returncode == 2 and bad.stderr == "error: --strategy: must be random or kmeans (got 'spectral')\n"
