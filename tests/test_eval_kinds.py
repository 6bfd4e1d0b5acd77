"""Every checkpoint kind a method produces evaluates: merged LoRA, dense merge, logit ensemble and
LoRA-MoE (the last two through the hf backend only)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_atax
from knowledge_fixtures import write_fixture_data

from harness.builtin import resolve_builtin
from harness.merge.checkpoints import merge_checkpoints
from harness.modeling import load_causal_lm

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_fixture_data(tmp_path_factory.mktemp("kdata"))


def evaluate(target, data_dir, results, backend="auto"):
    result = run_atax("eval", str(target), "--suite", "knowledge", "--benchmarks", "arc_challenge,gsm8k",
                      "--limit", "3", "--max-gen-toks", "8", "--data-dir", str(data_dir), "--results", str(results),
                      "--backend", backend, "--json", "--quiet", timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_ensemble_probabilities_are_the_weighted_average(adapters, tmp_path):  # noqa: F811
    from peft import PeftModel

    from harness.evaluate.ensemble_lm import EnsembleLM, load_members

    ensemble = merge_checkpoints([adapters["a"], adapters["b"]], "ensemble", tmp_path / "ens", weights=[0.3, 0.7])
    assert ensemble.kind == "ensemble"
    model, members, weights = load_members(load_causal_lm("builtin:tiny-llama", None, "float32", CPU), ensemble.path)
    lm = EnsembleLM(members, weights, pretrained=model, tokenizer=str(resolve_builtin("builtin:tiny-llama")),
                    batch_size=1, device="cpu")
    ids = torch.tensor([[1, 40, 50, 60, 70]])
    got = lm._model_call(ids)
    probs = []
    for name in ("a", "b"):
        single = PeftModel.from_pretrained(load_causal_lm("builtin:tiny-llama", None, "float32", CPU),
                                           str(adapters[name].path)).eval()
        with torch.no_grad():
            probs.append(torch.softmax(single(ids).logits, dim=-1))
    torch.testing.assert_close(got, torch.log(0.3 * probs[0] + 0.7 * probs[1]), rtol=1e-5, atol=1e-6)


def test_ensemble_and_merges_evaluate(adapters, tmp_path, data_dir):  # noqa: F811
    checkpoints = {
        "ensemble": merge_checkpoints([adapters["a"], adapters["b"]], "ensemble", tmp_path / "ens"),
        "lora": merge_checkpoints([adapters["a"], adapters["b"]], "average", tmp_path / "avg"),
        "dense": merge_checkpoints([adapters["a"], adapters["b"]], "ties", tmp_path / "ties", params={"density": 0.5}),
    }
    for kind, checkpoint in checkpoints.items():
        scores = evaluate(checkpoint.path, data_dir, tmp_path / "res")
        assert set(scores) == {"arc_challenge", "gsm8k"}, kind
        assert scores["arc_challenge"]["n"] == 3
    vllm = run_atax("eval", str(checkpoints["ensemble"].path), "--suite", "knowledge", "--benchmarks", "arc_challenge",
                    "--limit", "1", "--data-dir", str(data_dir), "--backend", "vllm", "--quiet")
    assert vllm.returncode == 2


def test_loramoe_checkpoint_evaluates_with_hf(tmp_path, data_dir):
    import yaml

    exp = {"name": "moe", "base_model": {"id": "builtin:tiny-llama"},
           "data": {"source": "builtin:toy-instructions", "max_samples": 32},
           "training": {"batch_size": 8, "max_seq_len": 160, "max_steps": 2, "scheduler": {"warmup_steps": 1}},
           "methods": [{"name": "loramoe", "options": {"n_experts": 2, "r": 2}}], "results_dir": "res"}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    trained = run_atax("train", "--config", str(tmp_path / "exp.yaml"), "--method", "loramoe", "--quiet")
    assert trained.returncode == 0, trained.stderr
    checkpoint = trained.stdout.split(": ", 1)[1].split(",")[0].strip()
    scores = evaluate(checkpoint, data_dir, tmp_path / "res")
    assert scores["arc_challenge"]["n"] == 3
