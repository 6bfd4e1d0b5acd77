"""The SFT engine on the tiny model: it learns, touches only LoRA, masks prompts, batches
without changing the loss, seeds inits per run, reuses and resumes checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import run_atax
from model_fixtures import BASE, FAST, TINY, job, records  # noqa: F401  (shared with other tests)
from safetensors.torch import load_file

from harness.builtin import resolve_builtin
from harness.data import IGNORE_INDEX, InstructionRecord, tokenize_instruction, tokenize_records
from harness.modeling import load_causal_lm, load_tokenizer
from harness.store import ResultsStore
from harness.train.batching import make_micro_batches
from harness.train.engine import train
from harness.train.loss import summed_token_loss


def adapter_weights(path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "adapter_model.safetensors"))


def test_training_lowers_loss_and_changes_only_lora(tmp_path):
    base_before = {k: v.clone() for k, v in load_causal_lm(TINY, None, "float32", torch.device("cpu")).state_dict().items()}
    checkpoint = train(job(tmp_path, max_steps=25, optimizer={"lr": 1e-2}))
    curve = [json.loads(line) for line in (checkpoint.path / "curve.jsonl").read_text().splitlines()]
    losses = [p["loss"] for p in curve if p["split"] == "train"]
    assert len(losses) == 25
    assert sum(losses[-5:]) / 5 < losses[0] - 0.3, losses

    weights = adapter_weights(checkpoint.path)
    lora_b = [k for k in weights if "lora_B" in k]
    assert len(lora_b) == 2 * 3  # 2 layers x gate/up/down
    assert all(weights[k].abs().sum() > 0 for k in lora_b)  # B starts at zero: every B changed

    from peft import PeftModel

    base = load_causal_lm(TINY, None, "float32", torch.device("cpu"))
    merged = PeftModel.from_pretrained(base, str(checkpoint.path))
    for name, param in merged.base_model.model.named_parameters():
        if "lora_" in name:
            continue
        original = base_before[name.replace(".base_layer", "")]
        assert torch.equal(param, original), f"base weight {name} changed"
    assert checkpoint.manifest["kind"] == "lora"
    assert checkpoint.manifest["metrics"]["steps"] == 25
    # the default: packed rows with per-sample attention
    assert checkpoint.manifest["metrics"]["batching"] == "packed"
    assert checkpoint.manifest["metrics"]["attention"] == "atax_varlen"


def test_labels_mask_the_prompt_and_end_with_eos():
    tokenizer = load_tokenizer(TINY)
    record = InstructionRecord("Add the numbers.", "2 and 3", "2 + 3 = 5.")
    example = tokenize_instruction(record, tokenizer, "alpaca", 256)
    prompt_ids = tokenizer("Below is an instruction that describes a task, paired with an input that provides "
                           "further context. Write a response that appropriately completes the request.\n\n"
                           "### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\n")["input_ids"]
    assert example.input_ids[: len(prompt_ids)] == prompt_ids
    assert example.labels[: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    assert example.labels[-1] == tokenizer.eos_token_id == example.input_ids[-1]
    assert tokenizer.decode(example.labels[len(prompt_ids):-1]) == "2 + 3 = 5."
    assert example.input_ids[0] == tokenizer.bos_token_id


def test_chat_template_labels_end_with_eos():
    tokenizer = load_tokenizer(TINY)
    example = tokenize_instruction(InstructionRecord("Say hi.", "", "hi"), tokenizer, "chat", 256)
    n_prompt = example.labels.index(next(x for x in example.labels if x != IGNORE_INDEX))
    assert tokenizer.decode(example.input_ids[:n_prompt]).endswith("<|assistant|>\n")
    assert example.labels[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(example.labels[n_prompt:-1]) == "hi"


def test_too_long_samples_are_cut_from_the_response_end_and_counted():
    tokenizer = load_tokenizer(TINY)
    long = InstructionRecord("Repeat.", "", "word " * 200)
    data = tokenize_records([long, InstructionRecord("x " * 300, "", "y")], tokenizer, "alpaca", 64)
    assert data.n_truncated == 1 and data.n_prompt_too_long == 1
    (example,) = data.examples
    assert len(example.input_ids) == 64 and example.truncated
    assert example.labels[-1] != tokenizer.eos_token_id  # the end (with EOS) is what was cut


@pytest.mark.parametrize("how", ["packed", "grouped", "padded"])
def test_batched_loss_equals_the_sum_of_per_sample_losses(how):
    tokenizer = load_tokenizer(TINY)
    model = load_causal_lm(TINY, None, "float32", torch.device("cpu")).eval()
    examples = tokenize_records(records(24, seed=3), tokenizer, "alpaca", 256).examples
    assert len({len(e.input_ids) for e in examples}) > 5  # a real spread of lengths
    device = torch.device("cpu")
    with torch.no_grad():
        one_by_one = sum(float(summed_token_loss(model, b, device))
                         for e in examples for b in make_micro_batches([e], "padded", 1, 256, tokenizer.pad_token_id))
        batches = make_micro_batches(examples, how, 4, 256, tokenizer.pad_token_id)
        batched = sum(float(summed_token_loss(model, b, device)) for b in batches)
    assert sum(b.n_samples for b in batches) == len(examples)
    assert sum(b.n_loss_tokens for b in batches) == sum(e.n_loss_tokens for e in examples)
    assert abs(batched - one_by_one) / one_by_one < 1e-4
    if how == "packed":
        assert len(batches) < len(examples) / 4  # several samples share a row


def test_run_seed_sets_the_lora_init_unless_shared(tmp_path):
    a = adapter_weights(train(job(tmp_path, "a", seed=1, max_steps=1, optimizer={"lr": 1e-12})).path)
    b = adapter_weights(train(job(tmp_path, "b", seed=2, max_steps=1, optimizer={"lr": 1e-12})).path)
    c = adapter_weights(train(job(tmp_path, "c", seed=3, init_seed=7, max_steps=1, optimizer={"lr": 1e-12})).path)
    d = adapter_weights(train(job(tmp_path, "d", seed=4, init_seed=7, max_steps=1, optimizer={"lr": 1e-12})).path)
    key = next(k for k in a if "lora_A" in k)
    assert not torch.equal(a[key], b[key])
    assert torch.allclose(c[key], d[key], atol=1e-9)


def test_finished_checkpoint_is_reused(tmp_path):
    first = train(job(tmp_path, max_steps=2))
    stamp = (first.path / "checkpoint.json").stat().st_mtime_ns
    again = train(job(tmp_path, max_steps=2))
    assert again.path == first.path and (first.path / "checkpoint.json").stat().st_mtime_ns == stamp


def test_validation_loss_is_measured(tmp_path):
    spec_job = job(tmp_path, max_steps=6, eval_steps=3)
    spec_job.validation = records(20, seed=9)
    curve = [json.loads(x) for x in (train(spec_job).path / "curve.jsonl").read_text().splitlines()]
    assert [p["step"] for p in curve if p["split"] == "validation"] == [3, 6]


def write_experiment(tmp_path, **training) -> str:
    exp = {"name": "t", "base_model": {"id": TINY}, "data": {"source": "builtin:toy-instructions",
                                                             "max_samples": 200},
           "training": {**FAST, **training}, "methods": ["vanilla"], "seeds": [0], "results_dir": "res"}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    return str(path)


def test_cli_train_records_checkpoint_and_curves(tmp_path):
    exp = write_experiment(tmp_path, validation_fraction=0.1, eval_steps=4)
    result = run_atax("train", "--config", exp, "--method", "vanilla", "--quiet", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"vanilla seed 0: {tmp_path / 'out'}, final loss ")
    assert (tmp_path / "out" / "checkpoint.json").is_file()
    with ResultsStore.open(tmp_path / "res") as store:
        (record,) = [store.checkpoint(k) for k in store.to_dataframe("checkpoints")["key"]]
        curve = store.curve(record.key)
    assert record.kind == "lora" and len(record.content_hash) == 64
    assert record.provenance["data"]["n_validation"] == 20
    assert len([p for p in curve if p.split == "train"]) == 12
    assert [p.step for p in curve if p.split == "validation"] == [4, 8, 12]


def test_cli_unknown_method(tmp_path):
    result = run_atax("train", "--config", write_experiment(tmp_path), "--method", "dtm", "--quiet")
    assert result.returncode == 2
    assert result.stderr == "error: --method: 'dtm' is not in the experiment; the experiment's methods are: vanilla\n"


def test_killed_run_resumes_to_the_same_adapter(tmp_path):
    resolve_builtin(TINY)
    exp = write_experiment(tmp_path, max_steps=16, save_steps=4, batch_size=16, micro_batch_size=2)
    reference = run_atax("train", "--config", exp, "--method", "vanilla", "--quiet",
                         "--results", str(tmp_path / "reference"))
    assert reference.returncode == 0, reference.stderr

    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-m", "harness", "train", "--config", exp, "--method", "vanilla",
                             "--quiet", "--results", str(tmp_path / "killed")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = tmp_path / "killed" / "runs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if runs.is_dir() and any(p.name.endswith(".resume") for p in runs.iterdir()):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list(runs.glob("*/checkpoint.json")), "the run finished before it could be killed"

    resumed = run_atax("train", "--config", exp, "--method", "vanilla", "--quiet", "--results", str(tmp_path / "killed"))
    assert resumed.returncode == 0, resumed.stderr
    (done,) = list(runs.glob("*/checkpoint.json"))
    manifest = json.loads(done.read_text())
    assert manifest["metrics"]["resumed_from_step"] >= 4
    assert not list(runs.glob(".*.resume"))  # the intermediate state is gone once complete
    (ref,) = list((tmp_path / "reference" / "runs").glob("*/checkpoint.json"))
    expected, got = adapter_weights(ref.parent), adapter_weights(done.parent)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


# The engine's losses on the tiny model, pinned: a change to tokenisation, masking, packing, the
# LoRA init, the optimiser or the schedule moves them. Update them only for an intended change
# (and bump ENGINE_VERSION with it, so old checkpoints are not reused).
GOLDEN_LOSSES = [6.934597, 6.949294, 6.934784, 6.855693, 6.794723, 6.648031]


def test_golden_losses_pin_the_engine(tmp_path):
    checkpoint = train(job(tmp_path, max_steps=6, n=64, optimizer={"lr": 1e-2}))
    curve = [json.loads(line) for line in (checkpoint.path / "curve.jsonl").read_text().splitlines()]
    losses = torch.tensor([p["loss"] for p in curve if p["split"] == "train"])
    torch.testing.assert_close(losses, torch.tensor(GOLDEN_LOSSES), rtol=1e-5, atol=1e-5)


def test_the_trained_models_base_weights_stay_as_loaded(tmp_path, monkeypatch):
    """The model that trained (not a fresh load) still holds the base weights: only LoRA moved."""
    import harness.train.engine as engine

    trained = []
    real_runner = engine.StepRunner

    def spy(model, *args, **kwargs):  # keeps a reference to the model being trained; changes nothing
        trained.append(model)
        return real_runner(model, *args, **kwargs)

    monkeypatch.setattr(engine, "StepRunner", spy)
    base_before = load_causal_lm(TINY, None, "float32", torch.device("cpu")).state_dict()
    train(job(tmp_path, max_steps=4, optimizer={"lr": 1e-2}))
    (model,) = trained
    moved, kept = [], 0
    for name, param in model.named_parameters():
        if "lora_" in name:
            moved.append(name)
            continue
        assert torch.equal(param.detach(), base_before[name.replace("base_model.model.", "").replace(
            ".base_layer", "")]), f"base weight {name} changed during training"
        kept += 1
    assert moved and kept >= 2 * 9  # 2 layers x (7 projections + 2 norms), all still the base's
