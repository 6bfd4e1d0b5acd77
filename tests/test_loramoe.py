"""LoRA-MoE: the layer's routing and mixture, the localized balancing loss (golden numbers), the
adapter's save/load round trip, and the method end to end through `atax train` on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import run_atax
from safetensors.torch import load_file

from baselines.loramoe.adapter import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    LoraMoEAdapter,
    LoraMoEAdapterOptions,
    load_adapter,
    load_loramoe_model,
    save_adapter,
)
from baselines.loramoe.balance import (
    LocalizedBalance,
    LocalizedBalanceOptions,
    knowledge_experts,
    localized_balance_loss,
)
from baselines.loramoe.layer import LoraMoELinear
from baselines.loramoe.method import LoraMoE, LoraMoEOptions
from harness.builtin.toy_instructions import generate_toy_instructions
from harness.config import TrainingConfig, load_experiment
from harness.data import InstructionRecord, tokenize_records
from harness.errors import UserError
from harness.method import PlanContext, RunSpec
from harness.modeling import load_causal_lm, load_tokenizer
from harness.train.batching import make_micro_batches
from harness.train.hooks import TrainContext

TINY = "builtin:tiny-llama"
CPU = torch.device("cpu")


def base_model():
    return load_causal_lm(TINY, None, "float32", CPU)


def wrapped(n_experts=3, r=2, init_seed=0):
    ctx = TrainContext(TINY, None, TrainingConfig(), RunSpec("t", 0), init_seed, CPU, load_tokenizer(TINY), Path("."))
    options = LoraMoEAdapterOptions(n_experts=n_experts, r=r, alpha=8, dropout=0.0)
    return LoraMoEAdapter(options, ctx).wrap(base_model(), ctx)


def test_router_probabilities_sum_to_one_and_the_mixture_matches_a_loop_over_experts():
    torch.manual_seed(0)
    layer = LoraMoELinear(torch.nn.Linear(16, 12), n_experts=5, r=3, alpha=6, dropout=0.0)
    torch.nn.init.normal_(layer.lora_B)
    x = torch.randn(2, 7, 16)
    out = layer(x)
    probs = layer.last_router_probs
    assert probs.shape == (2, 7, 5) and bool((probs > 0).all())
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 7), rtol=0, atol=1e-6)
    expected = layer.base_layer(x) + sum(probs[..., e:e + 1] * 2.0 * (x @ layer.lora_A[e].T @ layer.lora_B[e].T)
                                         for e in range(5))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_wrapped_model_starts_equal_to_the_base_and_only_the_adapter_trains():
    ids = torch.randint(4, 1000, (2, 11), generator=torch.Generator().manual_seed(0))
    model = wrapped()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, base_model()(input_ids=ids).logits)  # B = 0
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert len(trainable) == 2 * 3 * 3  # 2 layers x gate/up/down x (A, B, router)
    assert all(n.endswith(("lora_A", "lora_B", "router.weight")) for n in trainable)
    again = wrapped()
    assert torch.equal(model.model.layers[0].mlp.up_proj.lora_A, again.model.layers[0].mlp.up_proj.lora_A)
    other = wrapped(init_seed=1)
    assert not torch.equal(model.model.layers[0].mlp.up_proj.lora_A, other.model.layers[0].mlp.up_proj.lora_A)


def probs_of(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


@pytest.mark.parametrize("rows,samples,label,delta,expected", [
    # uniform routing, samples of different lengths, padding ignored: 0
    ([[0.5, 0.5]] * 5, [0, 0, 0, 1, -1], None, 0.0, 0.0),
    ([[0.25] * 4] * 3, [0, 1, 1], "task", 0.0, 0.0),
    # skewed: Q = [[.9, .1], [.5, .5]] -> unbiased var .32/3 over mean^2 .25
    ([[0.9, 0.1], [0.9, 0.1], [0.5, 0.5]], [0, 0, 1], None, 0.0, 0.32 / 3 / 0.25),
    # uniform routing but labels with delta .5: Z = [.25, .75] per sample -> (4 * .0625 / 3) / .25
    ([[0.5, 0.5]] * 4, [0, 0, 1, 1], "task", 0.5, 1 / 3),
    # Q proportional to 1 / I makes Z uniform: the minimiser routes less to the 1 + delta group
    ([[0.75, 0.25]] * 2, [0, 1], "task", 0.5, 0.0),
])
def test_balance_loss_golden(rows, samples, label, delta, expected):
    labels = None if label is None else torch.full((2,), {"knowledge": 0, "task": 1}[label])
    n = len(rows[0])
    loss = localized_balance_loss(probs_of(rows), torch.tensor(samples), labels, n // 2, delta)
    torch.testing.assert_close(loss, torch.tensor(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("how", ["packed", "padded"])
def test_balance_loss_sees_the_samples_of_a_packed_or_padded_micro_batch(how):
    tokenizer = load_tokenizer(TINY)
    records = [InstructionRecord(**r) for r in generate_toy_instructions(6, 1)]
    examples = tokenize_records(records, tokenizer, "alpaca", 256).examples
    (batch,) = make_micro_batches(examples, how, 6, 256, tokenizer.pad_token_id, row_length=400)
    model = wrapped()
    model.model(**batch.model_inputs(CPU))  # the engine calls the decoder, as here
    samples = model.loramoe_sample_index
    assert int(samples.max()) + 1 == batch.n_samples == 6 and int((samples >= 0).sum()) == batch.n_real_tokens
    if how == "packed":
        assert samples.shape[0] < 6  # several samples share a row and are still told apart
    hook = LocalizedBalance(LocalizedBalanceOptions(weight=0.5, delta=0.2, label="knowledge"))
    loss = hook.loss(model, 0)
    layers = [m for m in model.modules() if isinstance(m, LoraMoELinear)]
    labels = torch.zeros(6, dtype=torch.long)  # knowledge: experts [0, 2) are the samples' own group
    assert knowledge_experts(3, 0.5) == 2 and knowledge_experts(5, 0.5) == 3 and knowledge_experts(2, 0.9) == 1
    expected = 0.5 * sum(localized_balance_loss(m.last_router_probs, samples, labels, 2, 0.2) for m in layers)
    torch.testing.assert_close(loss, expected)
    assert float(loss.detach()) > 0
    loss.backward()
    assert all(m.router.weight.grad.abs().sum() > 0 for m in layers)


def test_save_then_load_gives_identical_logits(tmp_path):
    model = wrapped()
    with torch.no_grad():  # make every tensor matter: B != 0
        for module in model.modules():
            if isinstance(module, LoraMoELinear):
                module.lora_B.normal_(0, 0.05)
    model.eval()
    save_adapter(model, tmp_path)
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["n_experts"] == 3
    assert len(load_file(str(tmp_path / WEIGHTS_FILE))) == 2 * 3 * 3  # adapter tensors only
    ids = torch.randint(4, 1000, (3, 13), generator=torch.Generator().manual_seed(1))
    reloaded = load_adapter(base_model(), tmp_path)
    assert not reloaded.training
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, reloaded(input_ids=ids).logits)
    (tmp_path / WEIGHTS_FILE).write_bytes(b"")
    with pytest.raises(Exception):  # noqa: B017 - a truncated file must not load silently
        load_adapter(base_model(), tmp_path)


EXPERIMENT = """\
name: loramoe-test
base_model: {{id: "builtin:tiny-llama"}}
data: {{source: "builtin:toy-instructions", max_samples: 64}}
training: {{batch_size: 8, micro_batch_size: 4, max_seq_len: 192, max_steps: 4,
           scheduler: {{warmup_steps: 1}}, optimizer: {{lr: 0.01}}}}
methods:
  - name: loramoe
    options:
{options}
results_dir: res
"""


def experiment(tmp_path: Path, **options) -> Path:
    lines = "\n".join(f"      {key}: {json.dumps(value)}" for key, value in options.items()) or "      {}"
    path = tmp_path / "exp.yaml"
    path.write_text(EXPERIMENT.format(options=lines))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("loramoe")
    exp = experiment(tmp_path, n_experts=3, r=2, balance_weight=0.1, balance_delta=0.1,
                     task_label_map={"builtin:toy-instructions": "task"})
    result = run_atax("train", "--config", str(exp), "--method", "loramoe", "--quiet", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"loramoe seed 0: {tmp_path / 'out'}, final loss ")
    return tmp_path / "out"


def test_cli_train_writes_a_loramoe_checkpoint(trained):
    manifest = json.loads((trained / "checkpoint.json").read_text())
    assert manifest["kind"] == "loramoe" and manifest["metrics"]["steps"] == 4
    assert manifest["run"]["adapter"] == {"name": "loramoe",
                                          "options": {"n_experts": 3, "r": 2, "alpha": 32, "dropout": 0.05}}
    assert manifest["run"]["auxiliary_loss"]["options"] == {"weight": 0.1, "delta": 0.1, "knowledge_fraction": 0.5,
                                                            "label": "task"}
    assert {p.name for p in trained.iterdir()} >= {WEIGHTS_FILE, CONFIG_FILE, "checkpoint.json"}


def test_training_moves_experts_and_routers_and_no_base_weight(trained):
    model = load_loramoe_model(trained, "cpu", "float32")
    initial = wrapped(n_experts=3, r=2, init_seed=0)  # the run's init seed is its seed, 0
    base = base_model().state_dict()
    for name, param in model.named_parameters():
        if name.endswith(("lora_A", "lora_B", "router.weight")):
            start = initial.get_parameter(name)
            assert not torch.equal(param, start), f"{name} did not train"
        else:
            assert torch.equal(param, base[name.replace(".base_layer", "")]), f"base weight {name} changed"


def test_task_label_comes_from_the_data_source(tmp_path):
    method = LoraMoE(LoraMoEOptions(balance_weight=0.1, task_label_map={"data/alpaca.json": "knowledge"}))
    (spec,) = method.plan([], PlanContext(seed=0, workdir=tmp_path, data_source="/abs/data/alpaca.json"))
    assert spec.auxiliary_loss.options["label"] == "knowledge" and spec.adapter.name == "loramoe"
    assert LoraMoE(LoraMoEOptions()).plan([], PlanContext(seed=0, workdir=tmp_path))[0].auxiliary_loss is None
    with pytest.raises(UserError, match="the data source 'tulu' is not in it"):
        method.plan([], PlanContext(seed=0, workdir=tmp_path, data_source="tulu"))


@pytest.mark.parametrize("options,message", [
    ({"n_experts": 0}, "methods[0].options.n_experts: must be >= 1 (got 0)"),
    ({"balance_weight": -0.5}, "methods[0].options.balance_weight: must be >= 0 (got -0.5)"),
    ({"r": -4}, "methods[0].options.r: must be >= 1 (got -4)"),
    ({"task_label_map": {"x": "world"}},
     "methods[0].options.task_label_map.x: must be one of 'knowledge' or 'task' (got 'world')"),
    ({"experts": 4}, "methods[0].options.experts: unknown key; allowed: n_experts, r, alpha, dropout, "
                     "balance_weight, balance_delta, knowledge_fraction, task_label_map"),
])
def test_bad_options_are_one_line_errors(tmp_path, options, message):
    path = experiment(tmp_path, **options)
    line = path.read_text().splitlines().index(f"      {next(iter(options))}: {json.dumps(next(iter(options.values())))}")
    with pytest.raises(UserError) as info:
        load_experiment(path)
    assert str(info.value) == f"{path}:{line + 1}: {message}"


def test_cli_reports_a_bad_option_in_one_line(tmp_path):
    result = run_atax("train", "--config", str(experiment(tmp_path, alpha=-1)), "--method", "loramoe", "--quiet")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == f"error: {tmp_path / 'exp.yaml'}:9: methods[0].options.alpha: must be > 0 (got -1)\n"
