"""Cascade attention over one shared copy of a prefix: the same attention as over each row's own copy,
and a model whose attention would not read the shared copy is caught, not silently answered."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from transformers import AutoModelForCausalLM

from harness.builtin import resolve_builtin
from harness.evaluate import shared_prefix
from harness.evaluate.cached_forward import CachedForward, empty_rows
from harness.evaluate.generation import GenerationRequest, GreedyGenerator
from harness.evaluate.prefix_hflm import GENERATION_PATH, PrefixCachedHFLM, check_shared_prefix
from harness.evaluate.shared_prefix import SharedPrefix, attend_with_prefix, attending_to

CPU = torch.device("cpu")
WORDS = "the cat dog sat on a mat with red blue ideas 42 7".split()


def _reference(query, prefix_keys, prefix_values, key, value, mask):
    """sdpa over each row's copy of the prefix followed by its own keys (key/value heads repeated)."""
    rows, heads = query.shape[:2]
    groups = heads // key.shape[1]
    keys = torch.cat([prefix_keys.expand(rows, -1, -1, -1), key], dim=2).repeat_interleave(groups, dim=1)
    values = torch.cat([prefix_values.expand(rows, -1, -1, -1), value], dim=2).repeat_interleave(
        groups, dim=1
    )
    full = torch.cat([torch.ones(*mask.shape[:3], prefix_keys.shape[2], dtype=torch.bool), mask], dim=-1)
    return F.scaled_dot_product_attention(query, keys, values, attn_mask=full).transpose(1, 2)


@pytest.mark.parametrize("chunked", [False, True])
def test_attention_over_the_shared_copy_equals_attention_over_row_copies(monkeypatch, chunked):
    torch.manual_seed(0)
    rows, heads, kv_heads, q, own, prefix, width = 3, 4, 2, 3, 5, 7, 8
    query = torch.randn(rows, heads, q, width)
    key, value = torch.randn(rows, kv_heads, own, width), torch.randn(rows, kv_heads, own, width)
    prefix_keys, prefix_values = (
        torch.randn(1, kv_heads, prefix, width),
        torch.randn(1, kv_heads, prefix, width),
    )
    shared = SharedPrefix([prefix_keys], [prefix_values])
    if chunked:  # one row per pass
        monkeypatch.setattr(shared_prefix, "SCORE_ELEMENTS", heads * q * (prefix + own))
    causal = torch.arange(own)[None, :] <= torch.arange(q)[:, None] + (own - q)
    padded = causal[None, None].repeat(rows, 1, 1, 1)
    padded[1, :, :, :2] = False  # row 1's first own positions are padding
    for mask, expected_mask in ((padded, padded), (None, causal[None, None].expand(rows, 1, q, own))):
        got = attend_with_prefix(shared, 0, query, key, value, mask, None)
        want = _reference(query, prefix_keys, prefix_values, key, value, expected_mask)
        assert torch.allclose(got, want, atol=1e-5), float((got - want).abs().max())
    assert shared.reads == 2


def _prompts(tokenizer_lm: HFLM, count: int) -> list[list[int]]:
    rng = random.Random(3)
    preamble = "".join(
        f"Q: {' '.join(rng.choices(WORDS, k=8))}\nA: {rng.choice(WORDS)}\n\n" for _ in range(3)
    )
    return [
        tokenizer_lm.tok_encode(preamble + f"Q: {' '.join(rng.choices(WORDS, k=rng.randint(1, 6)))}\nA:")
        for _ in range(count)
    ]


def test_generation_on_a_shared_prefix_equals_generation_on_copies():
    lm = HFLM(pretrained=str(resolve_builtin("builtin:tiny-llama")), device="cpu")
    forward = CachedForward(lm.model, CPU)
    requests = [
        GenerationRequest(p, n, []) for p, n in zip(_prompts(lm, 5), [20, 9, 30, 14, 25], strict=True)
    ]
    copies = GreedyGenerator(forward, lm.tokenizer, eos_ids=[], max_rows=3, share_prefix=False).generate(
        requests
    )
    shared = GreedyGenerator(forward, lm.tokenizer, eos_ids=[], max_rows=3).generate(requests)
    assert shared == copies and all(
        len(out) == r.max_new_tokens for out, r in zip(shared, requests, strict=True)
    )


def test_a_model_whose_attention_skips_the_shared_copy_generates_on_copies():
    path = str(resolve_builtin("builtin:tiny-llama"))
    eager = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    lm = HFLM(
        pretrained=eager, tokenizer=HFLM(pretrained=path, device="cpu").tokenizer, device="cpu", batch_size=4
    )
    forward = CachedForward(eager, CPU)
    tokens = _prompts(lm, 1)[0]
    assert check_shared_prefix(forward, eager, tokens) == (
        "RuntimeError: the model attended to the shared prefix in 0 of 2 layers"
    )
    sdpa = AutoModelForCausalLM.from_pretrained(path).eval()
    assert check_shared_prefix(CachedForward(sdpa, CPU), sdpa, tokens) is None
    _, prefix = forward(empty_rows(1, CPU), [tokens[:10]], logits=False)
    with attending_to(None):  # nothing shared: the plain forward, no count
        forward(prefix, [tokens[10:12]])
    kwargs = {"until": ["\n\n"], "max_gen_toks": 12, "do_sample": False}
    requests = [
        Instance("generate_until", {}, (lm.tok_decode(p), dict(kwargs)), i)
        for i, p in enumerate(_prompts(lm, 3))
    ]
    fast = PrefixCachedHFLM(pretrained=eager, tokenizer=lm.tokenizer, device="cpu", generation_rows=2)
    assert fast.generate_until(requests, disable_tqdm=True) == lm.generate_until(requests, disable_tqdm=True)
    assert fast.engine_paths["generate_until"] == (
        f"{GENERATION_PATH}, prefix copied per row: RuntimeError: the model attended to the shared prefix "
        "in 0 of 2 "
        "layers"
    )
