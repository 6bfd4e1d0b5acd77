"""The hf backend's engines on other architectures than Llama: equal to lm-eval's HF model, on the fast
path where the model allows it and on lm-eval's own where it does not (said in `engine_paths`).

Each model is a random tiny one of its architecture with the tiny Llama's vocabulary; what differs
is how it places tokens (learned absolute positions, OPT's offset, ALiBi, partial rotary), its
attention (biases, logit soft-capping, sliding windows on some layers) and its cache.
"""

from __future__ import annotations

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from scoring_fixtures import assert_same, mc_requests
from transformers import AutoConfig, AutoModelForCausalLM

from harness.builtin import resolve_builtin
from harness.evaluate.prefix_hflm import GENERATION_PATH, PREFIX_PATH, PrefixCachedHFLM

SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=1, head_dim=32, max_position_embeddings=512)
BOTH_FAST = (PREFIX_PATH, GENERATION_PATH)
COPIED = (f"{GENERATION_PATH}, prefix copied per row: RuntimeError: the model attended to the shared "
          "prefix in 0 of 2 layers")
CANNOT = "plain: cached forward failed: ValueError: too many values to unpack (expected 2)"
WINDOW = (f"{PREFIX_PATH}; requests over the 24-token attention window: plain",
          "plain: 24-token attention window")
ARCHITECTURES = {  # model type: (config options, engine_paths expected: log-likelihoods, generation)
    "gpt2": (dict(n_embd=64, n_layer=2, n_head=2, n_positions=512), BOTH_FAST),
    "opt": (dict(hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=2,
                 word_embed_proj_dim=64, max_position_embeddings=512), BOTH_FAST),
    "gpt_neox": (dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                      rotary_pct=0.25, max_position_embeddings=512), BOTH_FAST),
    "qwen2": (SHAPE, BOTH_FAST),
    "falcon": (dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                    new_decoder_architecture=False), (PREFIX_PATH, COPIED)),
    "bloom": (dict(hidden_size=64, n_layer=2, n_head=2), (CANNOT, CANNOT)),  # ALiBi from its own mask
    "gemma2": ({**SHAPE, "sliding_window": 24, "query_pre_attn_scalar": 32}, WINDOW),  # soft-capped too
}
GREEDY = {"until": ["\n\n"], "max_gen_toks": 12, "do_sample": False}


@pytest.fixture(scope="module")
def tokenizer_lm() -> HFLM:
    return HFLM(pretrained=str(resolve_builtin("builtin:tiny-llama")), device="cpu", batch_size=4)


@pytest.mark.parametrize("kind", list(ARCHITECTURES))
def test_engines_equal_lm_evals_hf_model(kind: str, tokenizer_lm: HFLM) -> None:
    options, (loglikelihood_path, generation_path) = ARCHITECTURES[kind]
    torch.manual_seed(0)
    config = AutoConfig.for_model(kind, vocab_size=1000, initializer_range=0.2, tie_word_embeddings=False,
                                  **options)
    model = AutoModelForCausalLM.from_config(config).eval()
    plain = HFLM(pretrained=model, tokenizer=tokenizer_lm.tokenizer, device="cpu", batch_size=4)
    fast = PrefixCachedHFLM(pretrained=model, tokenizer=tokenizer_lm.tokenizer, device="cpu", batch_size=4,
                            generation_rows=3)
    # shortest first: the engine's check runs on the first request (a window must not hide behind it)
    requests = sorted(mc_requests(tokenizer_lm, seed=6), key=lambda r: len(r.args[0]) + len(r.args[1]))
    expected = plain.loglikelihood(requests, disable_tqdm=True)
    assert_same(expected, fast.loglikelihood(requests, disable_tqdm=True))
    prompts = sorted({r.args[0] for r in requests}, key=len)[::3]
    generations = [Instance("generate_until", {}, (p, dict(GREEDY)), i) for i, p in enumerate(prompts)]
    expected_text = plain.generate_until(generations, disable_tqdm=True)
    assert fast.generate_until(generations, disable_tqdm=True) == expected_text
    assert fast.engine_paths == {"loglikelihood": loglikelihood_path, "generate_until": generation_path}
