"""`atax eval` on the tiny model: all nine benchmarks offline in one lm-eval call, stored with
per-item records, prompts identical to lm-eval's own configs, and a response cache per checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_atax
from knowledge_fixtures import stock_prompt, write_fixture_data

from harness.store import ResultsStore
from suites.knowledge.benchmarks import BENCHMARKS, DATASETS, DEFAULT_BENCHMARKS

pytestmark = pytest.mark.slow
# Short generations keep the CPU run quick; they change scores, not prompts.
QUICK = ["--limit", "1", "--max-gen-toks", "8", "--batch-size", "16", "--quiet"]


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fixture_data(tmp_path_factory.mktemp("knowledge-data"))


@pytest.fixture(scope="module")
def full_run(fixture_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    results = tmp_path_factory.mktemp("results")
    proc = run_atax("eval", "builtin:tiny-llama", "--suite", "knowledge", "--data-dir", str(fixture_dir),
                    "--allow-code-execution", "--results", str(results), "--json", *QUICK, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), results


def test_all_nine_run_offline_and_are_stored(full_run: tuple[dict, Path]) -> None:
    summary, results = full_run
    assert list(summary) == list(DEFAULT_BENCHMARKS)
    for name, values in summary.items():
        assert BENCHMARKS[name].primary in values, name
        assert 0.0 <= values[BENCHMARKS[name].primary] <= 1.0
    # --limit is per lm-eval task: one item per MMLU subject and per BBH task.
    assert summary["mmlu"]["n"] == len(DATASETS["mmlu"].subsets)
    assert summary["bbh"]["n"] == len(DATASETS["bbh"].subsets)
    assert {"exact_match,strict-match", "exact_match,flexible-extract"} <= set(summary["gsm8k"])
    assert "acc_norm" in summary["arc_challenge"]
    with ResultsStore.open(results) as store:
        assert store.checkpoint("builtin:tiny-llama") is not None
        for name, values in summary.items():
            scores = {s.metric: s for s in store.scores(checkpoint="builtin:tiny-llama", benchmark=name)}
            assert {m: s.value for m, s in scores.items()} == {k: v for k, v in values.items() if k != "n"}
            meta = scores[BENCHMARKS[name].primary].run_meta
            assert meta["lm_eval_version"] and meta["task_versions"] and meta["seeds"]["fewshot_seed"] == 1234
            assert meta["backend"] == "hf" and meta["batch_size"] == 16 and meta["max_gen_toks"] == 8
            items = store.items(checkpoint="builtin:tiny-llama", benchmark=name)
            assert len(items) == values["n"]
            for item in items:
                assert len(item.item_hash) == 64 and item.extra["prompt_hash"] and item.prediction is not None
                assert item.score == item.extra["metrics"][BENCHMARKS[name].primary]


def test_prompts_equal_lm_eval_own_configs(full_run: tuple[dict, Path], fixture_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from lm_eval.utils import hash_string

    from suites.knowledge.code_metric import preload_lm_eval_code_modules

    _, results = full_run
    monkeypatch.setenv("HF_ALLOW_CODE_EVAL", "1")  # lm-eval's code utils run a smoke test at import
    preload_lm_eval_code_modules()
    with ResultsStore.open(results) as store:
        for name in DEFAULT_BENCHMARKS:
            task, prompt = stock_prompt(name, fixture_dir)
            stored = [i for i in store.items(checkpoint="builtin:tiny-llama", benchmark=name)
                      if i.extra["task"] == task and i.extra["doc_id"] == 0]
            assert len(stored) == 1, name
            assert stored[0].extra["prompt_hash"] == hash_string(prompt), name


def _lora_checkpoint(out: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from harness.checkpoint import write_checkpoint
    from harness.modeling import resolve_model_ref

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(resolve_model_ref("builtin:tiny-llama")),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["gate_proj", "up_proj", "down_proj"],
                                      init_lora_weights=False))
    manifest = {"kind": "lora", "run_key": "test-lora-run", "base_model": {"id": "builtin:tiny-llama", "revision": None}}
    write_checkpoint(out, manifest, lambda tmp: model.save_pretrained(str(tmp)))
    return out


def test_response_cache_is_keyed_by_checkpoint(full_run: tuple[dict, Path], fixture_dir: Path,
                                               tmp_path: Path) -> None:
    """lm-eval keys cached responses by request only; ours must not hand one model's answers to another."""
    from sqlitedict import SqliteDict

    from harness.evaluate.backends.hf import HFOptions
    from harness.evaluate.lmeval_lm import response_cache_path
    from harness.evaluate.target import resolve_target

    options = HFOptions(batch_size=16).model_dump(mode="json")
    base_cache = f"{response_cache_path(resolve_target('builtin:tiny-llama'), 'hf', options)}_rank0.db"
    assert Path(base_cache).is_file()
    with SqliteDict(base_cache, autocommit=True) as db:
        generations = [k for k, v in db.items() if isinstance(v, str)]
        assert generations
        for key in generations:  # plant a recognisable answer in the base model's cache
            db[key] = " So the answer is 7. The answer is 7."
    args = ["--benchmarks", "gsm8k", "--data-dir", str(fixture_dir), "--json", *QUICK]
    base = run_atax("eval", "builtin:tiny-llama", "--results", str(tmp_path / "r1"), *args, timeout=300)
    assert base.returncode == 0, base.stderr
    with ResultsStore.open(tmp_path / "r1") as store:
        assert store.items(checkpoint="builtin:tiny-llama", benchmark="gsm8k")[0].prediction == "7"
    lora = _lora_checkpoint(tmp_path / "lora")
    other = run_atax("eval", str(lora), "--results", str(tmp_path / "r2"), *args, timeout=300)
    assert other.returncode == 0, other.stderr
    with ResultsStore.open(tmp_path / "r2") as store:
        record = store.checkpoint("test-lora-run")
        assert record is not None and record.kind == "lora"
        item = store.items(checkpoint="test-lora-run", benchmark="gsm8k")[0]
        assert item.prediction != "7"
        assert store.scores(checkpoint="test-lora-run")[0].run_meta["target"]["adapter"] == str(lora.resolve())


def test_primary_metrics_option_makes_acc_norm_the_stored_primary(full_run: tuple[dict, Path],
                                                                  fixture_dir: Path, tmp_path: Path) -> None:
    # Small models' reports use acc_norm for ARC; the option moves the primary flag and the per-item scores.
    from harness.evaluate.runner import EvalRequest, run_eval

    options = {"benchmarks": ["arc_challenge"], "data_dir": str(fixture_dir), "limit": 1,
               "primary_metrics": {"arc_challenge": "acc_norm"}}
    run_eval(EvalRequest("builtin:tiny-llama", "knowledge", options, "hf", {"batch_size": 16}, tmp_path))
    with ResultsStore.open(tmp_path) as store:
        scores = store.scores(checkpoint="builtin:tiny-llama", benchmark="arc_challenge")
        assert [s.metric for s in scores if s.meta.get("primary")] == ["acc_norm"]
        items = store.items(checkpoint="builtin:tiny-llama", benchmark="arc_challenge")
        assert items and all(item.score == item.extra["metrics"]["acc_norm"] for item in items)
