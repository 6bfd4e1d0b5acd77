"""Per-sample (varlen) attention for packed rows: exact against one-sample-at-a-time SDPA in
loss and gradients, installed only where it is exact, and the batching plan built on it."""

from __future__ import annotations

import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM

from harness.builtin.toy_instructions import generate_toy_instructions
from harness.data import InstructionRecord, tokenize_records
from harness.modeling import load_causal_lm, load_tokenizer
from harness.train.attention import VARLEN, plan_batching, sample_spans
from harness.train.batching import make_micro_batches
from harness.train.cpu_memory import keep_freed_memory
from harness.train.loss import summed_token_loss

TINY = "builtin:tiny-llama"
CPU = torch.device("cpu")


def test_sample_spans_follow_restarting_positions():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 0, 1, 2]])
    assert sample_spans(positions, 2, 9) == [[3, 2, 4], [6, 3]]
    assert sample_spans(torch.arange(9).unsqueeze(0), 2, 9) is None  # one sample per row
    assert sample_spans(None, 2, 9) is None


def test_plan_installs_varlen_and_lets_packed_rows_fill_max_seq_len():
    model = load_causal_lm(TINY, None, "float32", CPU)
    plan = plan_batching(model, "packed", CPU, 1000, 1024)
    assert (plan.how, plan.row_length, plan.attention) == ("packed", 1024, VARLEN)
    assert model.config._attn_implementation == VARLEN


@pytest.mark.parametrize("how", ["packed", "grouped", "padded"])
def test_varlen_loss_and_gradients_equal_one_sample_at_a_time(how):
    tokenizer = load_tokenizer(TINY)
    records = [InstructionRecord(**r) for r in generate_toy_instructions(12, 5)]
    examples = tokenize_records(records, tokenizer, "alpaca", 256).examples
    model = load_causal_lm(TINY, None, "float32", CPU)

    def loss_and_grads(batches):
        model.zero_grad(set_to_none=True)
        total = sum(summed_token_loss(model, b, CPU) for b in batches)
        total.backward()
        return float(total.detach()), {n: p.grad.clone() for n, p in model.named_parameters()}

    # reference: stock sdpa, one unpadded sample per forward
    reference, reference_grads = loss_and_grads(
        [b for e in examples for b in make_micro_batches([e], "padded", 1, 256, tokenizer.pad_token_id)])
    assert plan_batching(model, how, CPU, len(tokenizer), 256).attention == VARLEN
    batches = make_micro_batches(examples, how, 4, 256, tokenizer.pad_token_id, row_length=256)
    if how == "packed":
        assert any(b.n_samples > b.input_ids.shape[0] for b in batches)  # rows really hold several samples
    else:
        assert any(b.n_real_tokens < b.input_ids.numel() for b in batches)  # and these carry padding
    loss, grads = loss_and_grads(batches)
    assert abs(loss - reference) / reference < 1e-5
    for name, grad in reference_grads.items():
        relative = float((grads[name] - grad).norm() / grad.norm())
        assert relative < 1e-5, (name, relative)


def tiny_mistral(sliding_window: int) -> torch.nn.Module:
    torch.manual_seed(0)
    config = MistralConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                           num_key_value_heads=1, head_dim=64, vocab_size=1000, sliding_window=sliding_window)
    return MistralForCausalLM(config).eval()


def test_a_sliding_window_shorter_than_the_samples_keeps_the_models_attention():
    model = tiny_mistral(sliding_window=512)
    plan = plan_batching(model, "packed", CPU, 1000, 1024)
    assert plan.attention == "sdpa" and plan.how == "packed"  # transformers' block mask still isolates
    assert plan.row_length == 6 * 128  # masked attention: rows stay short
    assert plan_batching(tiny_mistral(sliding_window=4096), "packed", CPU, 1000, 1024).attention == VARLEN


def test_the_logit_check_restores_an_attention_that_varlen_does_not_reproduce():
    # a window of 4 over the check's 9-token sample: the rule lets it through (max_seq_len 4),
    # the logits differ, and the model keeps its own attention
    model = tiny_mistral(sliding_window=4)
    plan = plan_batching(model, "grouped", CPU, 1000, 4)
    assert plan.attention == "sdpa" and model.config._attn_implementation == "sdpa"


def test_freed_memory_is_kept_only_on_cpu():
    assert keep_freed_memory(CPU) is True  # glibc Linux, as on CI
    assert keep_freed_memory(torch.device("cuda")) is False


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_the_start_up_checks_pass_in_the_training_dtypes(dtype):
    model = load_causal_lm(TINY, None, dtype, CPU)
    plan = plan_batching(model, "packed", CPU, 1000, 1024)
    assert (plan.how, plan.row_length, plan.attention) == ("packed", 1024, VARLEN)
