"""The baselines as methods: each trains on the tiny model and does what it claims."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from model_fixtures import logits, peft_logits
from safetensors.torch import load_file

from baselines.ewc import EWCOptions, EWCPenalty
from baselines.l2 import DeltaL2Penalty, PenaltyOptions, delta_norm_squared
from baselines.replay import ReplayMix, ReplayOptions
from harness.config import load_experiment
from harness.data import TextRecord, tokenize_records
from harness.errors import UserError
from harness.merge.adapters import read_adapter
from harness.modeling import load_causal_lm
from harness.train.runner import train_method

FAST = {"batch_size": 8, "max_seq_len": 192, "max_steps": 6, "scheduler": {"warmup_steps": 1},
        "optimizer": {"lr": 1e-2}}


def experiment(tmp_path: Path, methods: list, **training) -> Path:
    exp = {"name": "baselines", "base_model": {"id": "builtin:tiny-llama"},
           "data": {"source": "builtin:toy-instructions", "max_samples": 64},
           "training": {**FAST, **training}, "methods": methods, "results_dir": "res"}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def train(tmp_path: Path, methods: list, name: str | None = None, **training):
    exp = load_experiment(experiment(tmp_path, methods, **training))
    entry = next(m for m in exp.methods if m.row_name == (name or exp.methods[0].row_name))
    return train_method(exp, entry, 0, exp.results_dir)


def delta_norm(checkpoint) -> float:
    return float(sum(m.delta().norm() ** 2 for m in read_adapter(checkpoint.path).modules.values()))


class _Ctx:  # the parts of TrainContext the penalties read
    def __init__(self, tmp_path):
        self.cache_dir = tmp_path
        self.device = torch.device("cpu")


def peft_model(seed: int = 0):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(load_causal_lm("builtin:tiny-llama", None, "float32", torch.device("cpu")),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["up_proj", "down_proj"]))
    return model


def test_l2_gram_formula_equals_the_materialised_delta():
    model = peft_model()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    expected = sum(float(((m.scaling["default"] * m.lora_B["default"].weight @ m.lora_A["default"].weight) ** 2).sum())
                   for _, m in model.named_modules() if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {}))
    assert abs(float(delta_norm_squared(model)) - expected) / expected < 1e-5


def test_penalties_are_zero_at_step_0_and_ewc_with_unit_fisher_is_l2(tmp_path):
    model = peft_model()
    l2 = DeltaL2Penalty(PenaltyOptions(**{"lambda": 0.3}), _Ctx(tmp_path))
    from harness.train.lora import lora_modules

    ones = {name: torch.ones(b.shape[0], a.shape[1]) for name, a, b, _ in lora_modules(model)}
    ewc = EWCPenalty(EWCOptions(**{"lambda": 0.3}), _Ctx(tmp_path), fisher=ones)
    assert float(l2.penalty(model, 0)) == 0.0 and float(ewc.penalty(model, 0)) == 0.0  # B starts at zero
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    assert float(l2.penalty(model, 1)) > 0
    torch.testing.assert_close(ewc.penalty(model, 1), l2.penalty(model, 1), rtol=1e-5, atol=1e-6)


def test_large_lambda_shrinks_the_update(tmp_path):
    vanilla = train(tmp_path, ["vanilla", {"name": "l2", "options": {"lambda": 50.0}}], "vanilla")
    strong = train(tmp_path, ["vanilla", {"name": "l2", "options": {"lambda": 50.0}}], "l2")
    assert strong.checkpoint.manifest["run"]["regularizer"]["name"] == "delta_l2"
    assert delta_norm(strong.checkpoint) < 0.5 * delta_norm(vanilla.checkpoint)


def test_ewc_trains_with_a_cached_base_fisher(tmp_path, monkeypatch):
    monkeypatch.setenv("ATAX_CACHE", str(tmp_path / "cache"))
    options = {"corpus": "builtin:toy-corpus", "fisher_tokens": 2000, "lambda": 5.0}
    result = train(tmp_path, [{"name": "ewc", "options": options}])
    (fisher_file,) = list((tmp_path / "cache" / "ewc-fisher").glob("*/fisher.safetensors"))
    fisher = load_file(str(fisher_file))
    assert len(fisher) == 6 and all((f >= 0).all() and f.sum() > 0 for f in fisher.values())
    assert result.checkpoint.manifest["run"]["regularizer"]["options"]["corpus"] == "builtin:toy-corpus"
    stamp = fisher_file.stat().st_mtime_ns
    train(tmp_path, [{"name": "ewc", "options": {**options, "lambda": 1.0}}])  # new run, same Fisher
    assert fisher_file.stat().st_mtime_ns == stamp
    # The same run again elsewhere, now with the Fisher read from the cache: the same adapter, bit for bit.
    (tmp_path / "again").mkdir()
    again = train(tmp_path / "again", [{"name": "ewc", "options": options}])
    assert again.checkpoint.path != result.checkpoint.path
    assert (again.checkpoint.path / "adapter_model.safetensors").read_bytes() == \
        (result.checkpoint.path / "adapter_model.safetensors").read_bytes()


def test_replay_mixes_the_requested_ratio(tmp_path):
    from harness.builtin.toy_instructions import generate_toy_instructions
    from harness.data import InstructionRecord
    from harness.method import RunSpec
    from harness.train.schedule import step_batches

    records = [InstructionRecord(**r) for r in generate_toy_instructions(90, 0)]

    class Ctx:
        run = RunSpec(name="main", seed=3)

    for ratio in (1.0, 0.5):
        mixed = ReplayMix(ReplayOptions(corpus="builtin:toy-corpus", ratio=ratio), Ctx()).apply(records, Ctx())
        texts = [r for r in mixed if isinstance(r, TextRecord)]
        assert len(texts) == round(ratio * 90) and len(mixed) == 90 + len(texts)
    from harness.config import TrainingConfig

    batches = step_batches(len(mixed), TrainingConfig(batch_size=15, epochs=1), seed=0)
    share = sum(sum(i >= 90 for i in b) for b in batches) / sum(len(b) for b in batches)
    assert abs(share - 45 / 135) < 1e-9  # every sample once per epoch: the ratio holds over the batches


def test_replay_text_samples_carry_loss_on_every_token(tmp_path):
    from harness.modeling import load_tokenizer

    tokenizer = load_tokenizer("builtin:tiny-llama")
    (example,) = tokenize_records([TextRecord("plain text about an invented town")], tokenizer, "alpaca", 64).examples
    assert example.labels == example.input_ids
    result = train(tmp_path, [{"name": "replay", "options": {"corpus": "builtin:toy-corpus"}}])
    data = result.checkpoint.manifest["data"]
    assert data["n_records"] == 128  # 64 instructions + 64 documents
    assert data["n_instruction_records"] == 64  # what the alignment-tax curve counts


def test_uniform_soup_runs_differ_in_the_listed_settings(tmp_path):
    settings = [{"lr": 1e-2, "seed": 0}, {"lr": 5e-3, "seed": 1}]
    result = train(tmp_path, [{"name": "uniform_soup", "options": {"settings": settings}}])
    lrs = sorted(r.manifest["training"]["optimizer"]["lr"] for r in result.runs)
    assert lrs == [5e-3, 1e-2]
    assert len({r.manifest["run"]["seed"] for r in result.runs}) == 2
    assert len({r.manifest["run"]["init_seed"] for r in result.runs}) == 1
    assert result.checkpoint.kind == "lora" and read_adapter(result.checkpoint.path).rank == 32


def test_greedy_soup_needs_and_uses_validation(tmp_path):
    options = {"settings": [{"lr": 1e-2}, {"lr": 1e-2, "seed": 1}], "greedy": True}
    with pytest.raises(UserError, match="greedy needs held-out data"):
        train(tmp_path, [{"name": "uniform_soup", "options": options}])
    result = train(tmp_path, [{"name": "uniform_soup", "options": options}], validation_fraction=0.2)
    greedy = result.checkpoint.manifest["provenance"]["greedy"]
    assert 1 <= len(greedy["kept"]) <= 2 and greedy["validation_loss"] > 0


def test_data_order_merge_sees_the_same_samples_in_different_orders(tmp_path):
    result = train(tmp_path, [{"name": "data_order_merge", "options": {"k": 3}}])
    assert len({r.manifest["data"]["fingerprint"] for r in result.runs}) == 1
    assert len({r.manifest["run"]["seed"] for r in result.runs}) == 3
    from harness.config import TrainingConfig
    from harness.train.schedule import step_batches

    orders = [step_batches(64, TrainingConfig(batch_size=8, epochs=1), r.manifest["run"]["seed"]) for r in result.runs]
    assert all(sorted(sum(o, [])) == list(range(64)) for o in orders) and orders[0] != orders[1]
    merged = result.checkpoint.manifest
    assert merged["kind"] == "dense" and merged["merge"]["op"] == "parameter_selection"
    assert merged["merge"]["params"] == {"resample": True}
    # The same runs merged into one servable LoRA of rank 8 instead: nothing retrained.
    stamps = {r.path: (r.path / "checkpoint.json").stat().st_mtime_ns for r in result.runs}
    options = {"k": 3, "merge": {"name": "parameter_selection", "params": {"resample": True}, "lora_rank": 8}}
    as_lora = train(tmp_path, [{"name": "data_order_merge", "options": options}])
    assert {r.path: (r.path / "checkpoint.json").stat().st_mtime_ns for r in as_lora.runs} == stamps
    manifest = as_lora.checkpoint.manifest
    assert manifest["kind"] == "lora" and manifest["merge"]["lora_rank"] == 8
    assert 0 < manifest["merge"]["svd"]["relative_error"] < 1  # parameter selection is not low-rank


def test_scaled_vanilla_reuses_vanilla_and_interpolates(tmp_path):
    methods = ["vanilla", {"name": "scaled_vanilla", "options": {"alphas": [0.0, 0.5, 1.0]}}]
    vanilla = train(tmp_path, methods, "vanilla")
    runs_before = sorted(p.name for p in (tmp_path / "res" / "runs").iterdir())
    scaled = train(tmp_path, methods, "scaled_vanilla")
    assert sorted(p.name for p in (tmp_path / "res" / "runs").iterdir()) == runs_before  # nothing retrained
    by_alpha = {c.manifest["variant"]: c for c in scaled.checkpoints}
    assert list(by_alpha) == ["alpha=0", "alpha=0.5", "alpha=1"]
    torch.testing.assert_close(peft_logits(by_alpha["alpha=1"].path), peft_logits(vanilla.checkpoint.path))
    base = logits(load_causal_lm("builtin:tiny-llama", None, "float32", torch.device("cpu")).eval())
    torch.testing.assert_close(peft_logits(by_alpha["alpha=0"].path), base)
    half = {n: m.delta() for n, m in read_adapter(by_alpha["alpha=0.5"].path).modules.items()}
    full = {n: m.delta() for n, m in read_adapter(vanilla.checkpoint.path).modules.items()}
    for name in full:
        torch.testing.assert_close(half[name], 0.5 * full[name])


@pytest.mark.parametrize("method,message", [
    ({"name": "l2", "options": {"lambda": -1}}, "methods[0].options.lambda: must be >= 0 (got -1)"),
    ({"name": "ewc", "options": {"lamda": 1}}, "methods[0].options.lamda: unknown key; allowed: lambda, corpus"),
    ({"name": "uniform_soup", "options": {"settings": [{"lr": 1e-4}]}},
     "methods[0].options.settings: a soup needs K >= 2 settings (got 1)"),
    ({"name": "data_order_merge", "options": {"k": 1}}, "methods[0].options.k: must be >= 2 (got 1)"),
    ({"name": "replay", "options": {"ratio": 0}}, "methods[0].options.ratio: must be > 0 (got 0)"),
    ({"name": "scaled_vanilla", "options": {"alphas": [0.5, -0.5]}},
     "methods[0].options.alphas: every alpha must be >= 0 (got [0.5, -0.5])"),
])
def test_bad_baseline_options(tmp_path, method, message):
    with pytest.raises(UserError) as info:
        load_experiment(experiment(tmp_path, [method]))
    assert message in str(info.value)


@pytest.mark.realdata
def test_pretraining_corpus_loaders_on_real_samples(shared_data):
    from harness.data.corpus import load_corpus

    c4 = load_corpus(str(shared_data / "pretrain" / "c4_demo.jsonl"), n_docs=50, seed=0)
    wiki = load_corpus(str(shared_data / "pretrain" / "wiki_demo.txt"), n_docs=100, seed=0)
    assert len(c4) == 50 and all(len(d.text) >= 20 for d in c4)
    assert len(wiki) == 30 and wiki[0].text.split()[0] and len(json.dumps([d.text for d in wiki])) > 900_000
