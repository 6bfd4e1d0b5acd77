"""The loss-dynamics study: constructed cases that pin its definitions (the ratio, per-token
reductions, Spearman's ρ and which token types enter it), the portion split, and the command on
the tiny model end to end (JSON, figures, store curves, one-line errors)."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_atax
from scipy.stats import spearmanr

from harness.analyze.dynamics_report import analyse
from harness.analyze.loss_dynamics import (
    DynamicsOptions,
    Measurement,
    PortionSplit,
    split_portions,
    train_and_measure,
)
from harness.analyze.token_stats import (
    TokenLosses,
    TokenReductions,
    loss_ratio,
    per_token_reduction,
    shared_types,
    spearman,
    token_correlation,
)
from harness.config import BaseModelConfig, DataConfig, TrainingConfig
from harness.data import load_instruction_data
from harness.data.templates import TokenizedExample, tokenize_records
from harness.errors import UserError

TRAINING = {"batch_size": 4, "max_seq_len": 160, "optimizer": {"lr": 3e-3}, "scheduler": {"warmup_steps": 1},
            "lora": {"dropout": 0.3}}


def losses(ids: list[int], values: list[float]) -> TokenLosses:
    return TokenLosses(np.array(ids, dtype=np.int64), np.array(values, dtype=float))


def test_per_token_reduction_is_the_mean_over_occurrences() -> None:
    before = losses([1, 2, 1, 3, 1], [2.0, 2.0, 4.0, 1.0, 3.0])
    after = losses([1, 2, 1, 3, 1], [1.0, 2.5, 1.0, 1.0, 3.0])
    red = per_token_reduction(before, after)
    assert red.counts == {1: 3, 2: 1, 3: 1}
    assert red.reduction == pytest.approx({1: (1.0 + 3.0 + 0.0) / 3, 2: -0.5, 3: 0.0})
    assert before.mean - after.mean == pytest.approx(sum(red.reduction[t] * n for t, n in red.counts.items()) / 5)
    with pytest.raises(ValueError, match="same token positions"):
        per_token_reduction(before, losses([1, 2, 1, 3, 2], [0.0] * 5))


def test_ratio_is_guarded_when_the_validation_loss_does_not_move() -> None:
    assert loss_ratio(0.2, 0.1) == pytest.approx(2.0)
    assert loss_ratio(0.2, -0.1) == pytest.approx(-2.0)  # validation loss rose: the sign says so
    assert loss_ratio(0.2, 5e-5) is None and loss_ratio(0.2, 5e-5, eps=1e-5) == pytest.approx(4000.0)
    flat = losses([5, 6, 7], [1.0, 1.0, 1.0])
    measurements = [Measurement(k, k, 0, losses([5, 6, 7], [3.0 - k, 2.0 - k, 1.0]), flat) for k in range(3)]
    series = analyse(measurements, DynamicsOptions(portions=3, min_count=1), str)["series"]
    assert series["ratio"] == [None, None, None] and series["ratio_guarded"] == [False, True, True]
    assert series["delta_train"][1:] == pytest.approx([2 / 3, 2 / 3]) and series["delta_validation"][1:] == [0, 0]


def test_spearman_matches_scipy_on_the_same_numbers() -> None:
    rng = np.random.default_rng(0)
    for n in (3, 7, 40):
        x = rng.integers(0, 5, n).astype(float)  # ties on purpose: average ranks
        y = x + rng.normal(0, 2, n)
        assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None and spearman([1.0, 2.0], [2.0, 1.0]) is None


def test_rho_is_over_types_seen_often_enough_on_both_sides() -> None:
    rng = np.random.default_rng(1)
    types = list(range(20))
    train = TokenReductions({t: 5 + t for t in types}, {t: float(rng.normal()) for t in types})
    val = TokenReductions({t: 5 for t in types}, {t: float(rng.normal()) for t in types})
    val.counts[3] = 4  # below min_count on the validation side
    rho, n = token_correlation(train, val, min_count=5)
    kept = [t for t in types if t != 3]
    assert n == len(kept)
    assert rho == pytest.approx(spearmanr([train.reduction[t] for t in kept], [val.reduction[t] for t in kept]).statistic)
    # A type that occurs only in the training data never enters ρ, whatever its reduction.
    for extreme in (-1e6, 1e6):
        only_train = TokenReductions({**train.counts, 99: 500}, {**train.reduction, 99: extreme})
        assert 99 not in shared_types(only_train, val, 5)
        assert token_correlation(only_train, val, 5) == (rho, n)


def test_split_portions_is_a_seeded_partition() -> None:
    examples = [TokenizedExample([1, i], [1, i]) for i in range(23)]
    split = split_portions(examples, 4, seed=3, sample_size=4)
    parts = [*split.training, split.validation]
    assert sorted(len(p) for p in parts) == [5, 6, 6, 6]
    assert sorted(e.input_ids[1] for p in parts for e in p) == list(range(23))
    assert len(split.sample) == 4 and all(any(e is t for p in split.training for t in p) for e in split.sample)
    assert split_portions(examples, 4, seed=3, sample_size=4) == split
    assert split_portions(examples, 4, seed=4, sample_size=4) != split
    assert len(split_portions(examples, 4, seed=3).sample) == len(split.validation)  # default size
    assert len(split_portions(examples, 4, seed=3, sample_size=100).sample) == 23 - len(split.validation)
    with pytest.raises(UserError, match="at least 24 examples"):
        split_portions(examples, 24, seed=0)


@pytest.fixture(scope="module")
def tiny_examples() -> tuple[list[TokenizedExample], object]:
    from harness.modeling import load_tokenizer

    tokenizer = load_tokenizer("builtin:tiny-llama")
    records = load_instruction_data(DataConfig(source="builtin:toy-instructions", max_samples=24)).records
    return tokenize_records(records, tokenizer, "alpaca", 160).examples, tokenizer


def test_validation_copy_of_the_measured_training_data_gives_ratio_one(tiny_examples) -> None:
    """Validation = a (reordered) copy of the training examples L_train is measured on: both losses
    move alike, so ΔL_train / ΔL_val = 1 and ρ = 1 at every portion (eval mode, aligned measurements)."""
    examples, tokenizer = tiny_examples
    first, second = examples[:12], examples[12:]
    copy = [TokenizedExample(list(e.input_ids), list(e.labels)) for e in first]
    random.Random(0).shuffle(copy)
    split = PortionSplit(training=[first, second], validation=copy, sample=first)
    measurements = train_and_measure(BaseModelConfig(id="builtin:tiny-llama"), TrainingConfig(**TRAINING), split,
                                     tokenizer, seed=0)
    assert [m.portion for m in measurements] == [0, 1, 2] and [m.step for m in measurements] == [0, 3, 6]
    result = analyse(measurements, DynamicsOptions(portions=3, min_count=2), tokenizer.decode)
    series = result["series"]
    assert all(d > 1e-3 for d in series["delta_validation"][1:])  # the model did learn: not a 0/0 case
    assert series["ratio"][1:] == pytest.approx([1.0, 1.0], abs=1e-4)
    assert series["spearman_rho"][1:] == pytest.approx([1.0, 1.0], abs=1e-6) and result["rho_token_types"] >= 3


def experiment(directory: Path) -> Path:
    exp = {"name": "dyn", "base_model": {"id": "builtin:tiny-llama"},
           "data": {"source": "builtin:toy-instructions", "max_samples": 48}, "training": TRAINING,
           "methods": ["vanilla"], "results_dir": "res"}
    path = directory / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def test_command_writes_json_figures_and_store_curves(tmp_path: Path) -> None:
    exp = experiment(tmp_path)
    proc = run_atax("analyze", "loss-dynamics", "--config", str(exp), "--portions", "4", "--min-count", "2",
                    "--quiet", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "ΔL_train/ΔL_val" in proc.stdout and "Spearman ρ" in proc.stdout
    (out,) = (tmp_path / "res" / "analysis" / "loss-dynamics").iterdir()
    result = json.loads((out / "loss-dynamics.json").read_text())
    assert {p.name for p in out.iterdir()} >= {f"{stem}.{fmt}" for fmt in ("png", "pdf") for stem in
                                               ("loss-dynamics", "token-correlation", "representative-tokens")}
    series = result["series"]
    assert series["portion"] == [0, 1, 2, 3] and len(series["ratio"]) == 4 and series["ratio"][0] is None
    assert result["data"]["training_portion_sizes"] == [12, 12, 12] and result["data"]["validation_portion_size"] == 12
    assert len(result["per_token"]["train_reduction"]) == 3 and result["representative"]["early"]
    with sqlite3.connect(tmp_path / "res" / "results.sqlite") as db:
        rows = db.execute("SELECT split, step, loss FROM curves WHERE run_key = ? ORDER BY split, step",
                          (result["run_key"],)).fetchall()
    assert [(s, step) for s, step, _ in rows] == [(s, step) for s in ("train", "validation") for step in series["step"]]
    assert [loss for s, _, loss in rows if s == "validation"] == pytest.approx(series["loss_validation"])
    again = run_atax("analyze", "loss-dynamics", "--config", str(exp), "--portions", "4", "--min-count", "2", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["series"] == series  # stored: not recomputed


@pytest.mark.parametrize("args, message", [
    (["--portions", "2"], "--portions: must be at least 3"),
    (["--min-count", "0"], "--min-count: must be at least 1"),
    (["--portions", "49"], "--portions: 49 portions need at least 49 examples"),
])
def test_bad_options_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run_atax("analyze", "loss-dynamics", "--config", str(experiment(tmp_path)), "--quiet", *args)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
