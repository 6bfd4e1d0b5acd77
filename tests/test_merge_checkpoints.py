"""Merging real LoRA checkpoints of the tiny model: the exact average, dense operators, and the
one-line refusals of incompatible inputs (nothing written)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import run_atax
from model_fixtures import CPU, deltas, logits, peft_logits

from harness.checkpoint import Checkpoint
from harness.merge.adapters import read_adapter
from harness.merge.checkpoints import merge_checkpoints
from harness.modeling import load_causal_lm


def model_with_deltas(delta: dict[str, torch.Tensor]):
    model = load_causal_lm("builtin:tiny-llama", None, "float32", CPU)
    state = model.state_dict()
    with torch.no_grad():
        for name, d in delta.items():
            state[name].add_(d)
    return model.eval()


def test_exact_lora_average_is_the_average_of_products(adapters, tmp_path):
    a, b, c = adapters["a"], adapters["b"], adapters["c"]
    weights = [0.5, 0.3, 0.2]
    merged = merge_checkpoints([a, b, c], "average", tmp_path / "avg", weights=weights)
    assert merged.kind == "lora"
    assert read_adapter(merged.path).rank == 16 + 16 + 8
    expected = {n: sum(w * deltas(x)[n] for w, x in zip(weights, (a, b, c), strict=True)) for n in deltas(a)}
    got = deltas(merged)
    for name in expected:
        error = (got[name] - expected[name]).norm() / expected[name].norm()
        assert error < 1e-5, (name, float(error))
    torch.testing.assert_close(peft_logits(merged.path), logits(model_with_deltas(expected)), rtol=1e-4, atol=1e-5)


def test_factor_average_is_only_an_approximation(adapters, tmp_path):
    a, b = adapters["a"], adapters["b"]
    approx = merge_checkpoints([a, b], "lora_factor_average", tmp_path / "fa")
    exact = {n: 0.5 * deltas(a)[n] + 0.5 * deltas(b)[n] for n in deltas(a)}
    got = deltas(approx)
    errors = [float((got[n] - exact[n]).norm() / exact[n].norm()) for n in exact]
    assert max(errors) > 0.1  # cross terms B_i A_j: far from the average


def test_dense_average_equals_the_exact_lora_average(adapters, tmp_path):
    a, b = adapters["a"], adapters["b"]
    lora = merge_checkpoints([a, b], "average", tmp_path / "lora")
    dense = merge_checkpoints([a, b], "task_arithmetic", tmp_path / "dense", weights=[0.5, 0.5])
    assert dense.kind == "dense" and dense.manifest["merge"]["counts"]["merged_tensors"] == 6
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(str(dense.path), dtype=torch.float32).eval()
    torch.testing.assert_close(logits(loaded), peft_logits(lora.path), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op,params", [("ties", {"density": 0.5}), ("dare", {"p": 0.3}),
                                       ("dare_ties", {"p": 0.3}), ("parameter_selection", {})])
def test_dense_operators_write_loadable_models(adapters, tmp_path, op, params):
    merged = merge_checkpoints([adapters["a"], adapters["b"]], op, tmp_path / op, params=params, seed=1)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(merged.path), dtype=torch.float32)
    out = logits(model.eval())
    assert torch.isfinite(out).all()
    base = logits(load_causal_lm("builtin:tiny-llama", None, "float32", CPU).eval())
    assert not torch.allclose(out, base)  # the merge changed the model


def test_merge_is_reused_when_nothing_changed(adapters, tmp_path):
    first = merge_checkpoints([adapters["a"], adapters["b"]], "average", tmp_path / "m")
    stamp = (first.path / "checkpoint.json").stat().st_mtime_ns
    merge_checkpoints([adapters["a"], adapters["b"]], "average", tmp_path / "m")
    assert (first.path / "checkpoint.json").stat().st_mtime_ns == stamp


def test_cli_average_writes_a_lora(adapters, tmp_path):
    out = tmp_path / "merged"
    result = run_atax("merge", str(adapters["a"].path), str(adapters["b"].path), "--op", "average",
                      "--weights", "0.4,0.6", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"lora checkpoint: {out}"
    assert json.loads((out / "checkpoint.json").read_text())["merge"]["weights"] == [0.4, 0.6]


def _other_base(adapter: Checkpoint, tmp_path) -> str:
    copy = tmp_path / "other-base"
    shutil.copytree(adapter.path, copy)
    manifest = json.loads((copy / "checkpoint.json").read_text())
    manifest["base_model"] = {"id": "meta-llama/Llama-2-7b-hf", "revision": None}
    (copy / "checkpoint.json").write_text(json.dumps(manifest))
    return str(copy)


@pytest.mark.parametrize("case", ["base", "modules", "ranks", "weights_length", "weights_negative", "op", "density"])
def test_cli_refuses_incompatible_inputs(adapters, tmp_path, case):
    a, b = str(adapters["a"].path), str(adapters["b"].path)
    args, message = {
        "base": ([a, _other_base(adapters["b"], tmp_path), "--op", "average"],
                 "base model meta-llama/Llama-2-7b-hf differs from"),
        "modules": ([a, str(adapters["up"].path), "--op", "average"], "adapts other modules (up_proj) than"),
        "ranks": ([a, str(adapters["c"].path), "--op", "lora_factor_average"],
                  "rank 8 / alpha 16 differ from"),
        "weights_length": ([a, b, "--weights", "0.5,0.3,0.2"], "--weights: weights: 3 given for 2 models"),
        "weights_negative": ([a, b, "--weights", "1.5,-0.5"], "--weights: weights: must be >= 0"),
        "op": ([a, b, "--op", "slerp"], "--op: unknown merge operator 'slerp'; known: "),
        "density": ([a, b, "--op", "ties", "--density", "2"], "--op ties: density: must be in (0, 1]"),
    }[case]
    out = tmp_path / "out"
    result = run_atax("merge", *args, "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def _tensors(directory) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for file in sorted(directory.glob("*.safetensors")):
        out.update(load_file(str(file)))
    return out


@pytest.mark.parametrize("op,params", [("ties", {"density": 0.3}), ("task_arithmetic", {"scale": 0.5}),
                                       ("parameter_selection", {"resample": False})])
def test_chunked_streaming_equals_whole_tensor_merge(adapters, tmp_path, op, params):
    from harness import merge
    from harness.merge.dense import merge_dense
    from harness.modeling import resolve_model_dir

    base_dir = resolve_model_dir("builtin:tiny-llama")
    inputs = [read_adapter(adapters["a"].path), read_adapter(adapters["b"].path)]
    (tmp_path / "whole").mkdir()
    (tmp_path / "chunked").mkdir()
    merge_dense(base_dir, inputs, merge.get(op), tmp_path / "whole", weights=None, params=params, seed=0)
    merge_dense(base_dir, inputs, merge.get(op), tmp_path / "chunked", weights=None, params=params, seed=0,
                chunk_elements=1000, shard_bytes=200_000)
    whole, chunked = _tensors(tmp_path / "whole"), _tensors(tmp_path / "chunked")
    assert len(list((tmp_path / "chunked").glob("model-*-of-*.safetensors"))) > 1
    assert (tmp_path / "chunked" / "model.safetensors.index.json").is_file()
    assert whole.keys() == chunked.keys()
    for name in whole:
        if op == "parameter_selection":  # random draws differ per chunk; each entry still comes from an input
            continue
        torch.testing.assert_close(whole[name], chunked[name], rtol=1e-6, atol=1e-7)
    if op == "ties":  # and equals the operator applied to whole tensors directly
        name = next(iter(read_adapter(adapters["a"].path).modules))
        base = _tensors(base_dir)[name]
        thetas = [base + m.modules[name].delta() for m in inputs]
        torch.testing.assert_close(chunked[name], merge.get("ties")(thetas, base=base, **params), rtol=1e-5, atol=1e-6)


def test_dense_checkpoints_merge_too(adapters, tmp_path):
    one = merge_checkpoints([adapters["a"]], "task_arithmetic", tmp_path / "one")
    two = merge_checkpoints([adapters["b"]], "task_arithmetic", tmp_path / "two")
    both = merge_checkpoints([one, two], "task_arithmetic", tmp_path / "both", weights=[0.5, 0.5])
    exact = merge_checkpoints([adapters["a"], adapters["b"]], "average", tmp_path / "exact")
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(both.path), dtype=torch.float32).eval()
    torch.testing.assert_close(logits(model), peft_logits(exact.path), rtol=1e-4, atol=1e-5)
