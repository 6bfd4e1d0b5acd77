"""Grouped-query attention in place, prompt-lookup drafts and growing caches keep the engines' answers
(a tiny Llama with 2 query heads per key/value head, as SmolLM2 has 3)."""

from __future__ import annotations

import random

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from harness.builtin import resolve_builtin
from harness.evaluate.cached_forward import CachedForward, empty_rows
from harness.evaluate.generation import GenerationRequest, GreedyGenerator
from harness.evaluate.grouped_attention import grouped_sdpa
from harness.evaluate.prefix_hflm import GENERATION_PATH, PREFIX_PATH, PrefixCachedHFLM
from harness.evaluate.prompt_lookup import PromptLookup

CPU = torch.device("cpu")
WORDS = "the cat dog sat on a mat with red blue ideas 42 7".split()


@pytest.fixture(scope="module")
def gqa_lm() -> HFLM:
    path = resolve_builtin("builtin:tiny-llama")
    config = AutoConfig.from_pretrained(path)
    config.num_key_value_heads = 1  # two query heads share each key/value head
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()
    return HFLM(pretrained=model, tokenizer=HFLM(pretrained=str(path), device="cpu").tokenizer, device="cpu",
                batch_size=4)


def test_prompt_lookup_drafts_what_followed_the_latest_earlier_occurrence() -> None:
    lookup = PromptLookup([1, 2, 3, 9, 1, 2, 4, 5, 6, 1, 2])
    assert lookup.draft(3) == [4, 5, 6]  # "1 2" last came before 4 5 6 (not 3 9)
    lookup.extend([7])
    assert lookup.draft(2) == []  # 7 never occurred before
    lookup.extend([3])
    assert lookup.draft(2) == [9, 1]  # no "7 3" / "2 7 3": the one-token match
    assert lookup.draft(0) == []


def test_grouped_sdpa_equals_transformers_sdpa_and_is_put_back(gqa_lm: HFLM) -> None:
    forward = CachedForward(gqa_lm.model, CPU)
    tokens = [[5, 9, 13, 2, 7, 7, 30], [11, 12, 40, 41, 42]]
    _, past = forward(empty_rows(2, CPU), [t[:4] for t in tokens], logits=False)
    before = ALL_ATTENTION_FUNCTIONS["sdpa"]
    calls: list[int] = []
    original_sdpa = torch.nn.functional.scaled_dot_product_attention

    def counting(query: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        calls.append(query.shape[1])
        return original_sdpa(query, *args, **kwargs)

    past_copy = past.select(torch.arange(2))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
        grouped, _ = forward(past, [t[4:] for t in tokens])
    assert calls and set(calls) == {1}, "queries of both heads should run against the one key/value head"
    with torch.no_grad():
        ids = torch.tensor([[7, 7, 30], [42, 0, 0]])
        positions = past_copy.next_position[:, None] + torch.arange(3)[None]
        mask = torch.cat([past_copy.mask, torch.tensor([[1, 1, 1], [1, 0, 0]])], dim=1)
        plain = gqa_lm.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                             past_key_values=past_copy.cache, use_cache=True).logits
    assert torch.allclose(grouped[0], plain[0], atol=1e-5)
    assert torch.allclose(grouped[1, :1], plain[1, :1], atol=1e-5)
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is before
    with grouped_sdpa():
        assert ALL_ATTENTION_FUNCTIONS["sdpa"] is not before
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is before


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def test_gqa_model_loglikelihoods_equal_lm_evals(gqa_lm: HFLM) -> None:
    rng = random.Random(0)
    preamble = "".join(f"Q: {_text(rng, 10)}\nA: {_text(rng, 2)}\n\n" for _ in range(4))
    requests = [Instance("loglikelihood", {}, (ctx, " " + _text(rng, rng.randint(1, 5))), i)
                for i, ctx in enumerate([preamble + f"Q: {_text(rng, 4)}\nA:" for _ in range(3)] * 3
                                        + [f"Question: {_text(rng, 6)}\nAnswer:"] * 3)]
    expected = gqa_lm.loglikelihood(requests, disable_tqdm=True)
    fast = PrefixCachedHFLM(pretrained=gqa_lm.model, tokenizer=gqa_lm.tokenizer, device="cpu")
    got = fast.loglikelihood(requests, disable_tqdm=True)
    assert fast.engine_paths == {"loglikelihood": PREFIX_PATH}
    for (want_ll, want_greedy), (ll, greedy) in zip(expected, got, strict=True):
        assert abs(want_ll - ll) <= 1e-4 and want_greedy == greedy


@pytest.mark.parametrize("draft_tokens", [0, 3, 8])
def test_gqa_generation_with_drafts_equals_generate(gqa_lm: HFLM, draft_tokens: int) -> None:
    rng = random.Random(1)
    preamble = "".join(f"Q: {_text(rng, 8)}\nA: {_text(rng, 3)}\n\n" for _ in range(3))
    prompts = [gqa_lm.tok_encode(preamble + f"Q: {_text(rng, rng.randint(1, 6))}\nA:") for _ in range(4)]
    limits = [30, 12, 25, 40]
    references = []
    for prompt, limit in zip(prompts, limits, strict=True):
        with torch.no_grad():
            out = gqa_lm.model.generate(torch.tensor([prompt]), max_new_tokens=limit, do_sample=False,
                                        pad_token_id=0)
        references.append(out[0, len(prompt):].tolist())
    generator = GreedyGenerator(CachedForward(gqa_lm.model, CPU), gqa_lm.tokenizer, eos_ids=[], max_rows=3,
                                draft_tokens=draft_tokens)
    outputs = generator.generate([GenerationRequest(p, n, []) for p, n in zip(prompts, limits, strict=True)])
    assert outputs == references


def test_gqa_generate_until_through_the_backend(gqa_lm: HFLM) -> None:
    kwargs = {"until": ["\n\n"], "max_gen_toks": 20, "do_sample": False}
    requests = [Instance("generate_until", {}, (f"Q: {w} {w}\nA:", dict(kwargs)), i)
                for i, w in enumerate(WORDS[:4])]
    fast = PrefixCachedHFLM(pretrained=gqa_lm.model, tokenizer=gqa_lm.tokenizer, device="cpu",
                            generation_rows=2)
    expected = gqa_lm.generate_until(requests, disable_tqdm=True)
    assert fast.generate_until(requests, disable_tqdm=True) == expected
    assert fast.engine_paths == {"generate_until": GENERATION_PATH}
