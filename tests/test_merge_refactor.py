"""Re-factorising merges of LoRA sub-models into one LoRA of a chosen rank (truncated SVD): exact
when the rank reaches the merged delta's rank, the Eckart–Young error otherwise, recorded in the
manifest; the adapter loads in peft; refusals are one line, nothing written."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_atax
from model_fixtures import CPU, deltas, logits, peft_logits

from harness.merge.adapters import read_adapter
from harness.merge.checkpoints import merge_checkpoints
from harness.merge.spec import MergeSpec
from harness.modeling import load_causal_lm


def dense_deltas(checkpoint) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(str(checkpoint.path), dtype=torch.float32).state_dict()
    base = load_causal_lm("builtin:tiny-llama", None, "float32", CPU).state_dict()
    return {name: merged[name] - base[name] for name in base if not torch.equal(merged[name], base[name])}


def test_average_refactored_at_the_summed_rank_is_exact(adapters, tmp_path):  # noqa: F811
    a, b = adapters["a"], adapters["b"]
    merged = merge_checkpoints([a, b], "average", tmp_path / "svd", weights=[0.3, 0.7], lora_rank=32)
    assert merged.kind == "lora" and read_adapter(merged.path).rank == 32
    svd = merged.manifest["merge"]["svd"]
    assert svd["relative_error"] < 1e-5 and svd["max_module_relative_error"] < 1e-5
    expected = {n: 0.3 * deltas(a)[n] + 0.7 * deltas(b)[n] for n in deltas(a)}
    got = deltas(merged)
    assert got.keys() == expected.keys()
    for name in expected:
        assert float((got[name] - expected[name]).norm() / expected[name].norm()) < 1e-5, name


def test_ties_refactored_at_full_rank_equals_the_dense_merge(adapters, tmp_path):  # noqa: F811
    pair = [adapters["a"], adapters["b"]]
    dense = merge_checkpoints(pair, "ties", tmp_path / "dense", params={"density": 0.5})
    lora = merge_checkpoints(pair, "ties", tmp_path / "lora", params={"density": 0.5}, lora_rank=128)
    assert lora.manifest["merge"]["svd"]["relative_error"] < 1e-5
    expected, got = dense_deltas(dense), deltas(lora)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(dense.path), dtype=torch.float32).eval()
    torch.testing.assert_close(peft_logits(lora.path), logits(model), rtol=1e-4, atol=1e-5)


def test_low_rank_error_is_the_eckart_young_error_and_is_recorded(adapters, tmp_path):  # noqa: F811
    pair = [adapters["a"], adapters["b"]]
    dense = merge_checkpoints(pair, "ties", tmp_path / "dense", params={"density": 0.5})
    lora = merge_checkpoints(pair, "ties", tmp_path / "r4", params={"density": 0.5}, lora_rank=4)
    manifest = json.loads((lora.path / "checkpoint.json").read_text())
    svd = manifest["merge"]["svd"]
    assert manifest["merge"]["lora_rank"] == 4 and read_adapter(lora.path).rank == 4
    residual_sq = total_sq = 0.0
    for name, delta in dense_deltas(dense).items():
        singular = torch.linalg.svdvals(delta.double())
        best = float(singular[4:].square().sum().sqrt() / singular.square().sum().sqrt())
        got = deltas(lora)[name].double()
        measured = float((delta.double() - got).norm() / delta.double().norm())
        assert best > 0.05  # TIES' sparsified delta is far from rank 4
        assert measured == pytest.approx(best, rel=1e-4), name
        assert svd["module_relative_errors"][name] == pytest.approx(best, rel=1e-4), name
        residual_sq += (best * float(delta.double().norm())) ** 2
        total_sq += float(delta.double().norm()) ** 2
    assert svd["relative_error"] == pytest.approx((residual_sq / total_sq) ** 0.5, rel=1e-4)
    assert svd["max_module_relative_error"] == max(svd["module_relative_errors"].values())


def test_rank_is_part_of_the_merge_identity(adapters, tmp_path):  # noqa: F811
    pair = [adapters["a"], adapters["b"]]
    four = merge_checkpoints(pair, "task_arithmetic", tmp_path / "m", lora_rank=4)
    eight = merge_checkpoints(pair, "task_arithmetic", tmp_path / "m", lora_rank=8)
    assert four.manifest["run_key"] != eight.manifest["run_key"] and read_adapter(eight.path).rank == 8


def test_cli_lora_rank(adapters, tmp_path):  # noqa: F811
    out = tmp_path / "merged"
    result = run_atax("merge", str(adapters["a"].path), str(adapters["b"].path), "--op", "dare", "--p", "0.3",
                      "--lora-rank", "8", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"lora checkpoint: {out}"
    assert 0 < json.loads((out / "checkpoint.json").read_text())["merge"]["svd"]["relative_error"] < 1


@pytest.mark.parametrize("case", ["zero", "dense_input", "factor_average", "ensemble"])
def test_cli_lora_rank_refusals(adapters, tmp_path, case):  # noqa: F811
    a, b = str(adapters["a"].path), str(adapters["b"].path)
    if case == "dense_input":
        dense = merge_checkpoints([adapters["a"]], "task_arithmetic", tmp_path / "dense")
        b = str(dense.path)
    args, message = {
        "zero": (["--op", "ties", "--lora-rank", "0"], "--lora-rank: must be a positive rank (got 0)"),
        "dense_input": (["--op", "ties", "--lora-rank", "8"],
                        "--lora-rank re-factorises merges of LoRA checkpoints only (this one is dense)"),
        "factor_average": (["--op", "lora_factor_average", "--lora-rank", "8"],
                           "--lora-rank: --op lora_factor_average is not re-factorised; use it without --lora-rank"),
        "ensemble": (["--op", "ensemble", "--lora-rank", "8"],
                     "--lora-rank: --op ensemble is not re-factorised; use it without --lora-rank"),
    }[case]
    out = tmp_path / "out"
    result = run_atax("merge", a, b, *args, "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_merge_spec_validates_lora_rank():
    assert MergeSpec(name="ties", lora_rank=16).lora_rank == 16
    with pytest.raises(ValueError, match="lora_rank: merge 'ensemble' is not re-factorised"):
        MergeSpec(name="ensemble", lora_rank=16)
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        MergeSpec(name="ties", lora_rank=0)
