"""Batched greedy generation equals per-request greedy `model.generate`, stop sequences cut alike."""

from __future__ import annotations

import random

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import postprocess_generated_text
from model_fixtures import windowed_twin

from harness.builtin import resolve_builtin
from harness.evaluate.cached_forward import CachedForward
from harness.evaluate.generation import GenerationRequest, GreedyGenerator
from harness.evaluate.prefix_hflm import GENERATION_PATH, PrefixCachedHFLM

WORDS = "the cat dog sat on a mat with some red blue green ideas sleeping quickly over under 42 7".split()


@pytest.fixture(scope="module")
def plain_lm() -> HFLM:
    return HFLM(pretrained=str(resolve_builtin("builtin:tiny-llama")), device="cpu", batch_size=3)


def _reference(model: torch.nn.Module, prompt: list[int], max_new: int) -> list[int]:
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=max_new, do_sample=False,
                             pad_token_id=0)
    return out[0, len(prompt):].tolist()


def _prompts(plain: HFLM) -> list[str]:
    rng = random.Random(0)
    preamble = "".join(f"Q: {' '.join(rng.choice(WORDS) for _ in range(10))}\nA: {rng.choice(WORDS)}\n\n"
                       for _ in range(3))
    prompts = [preamble + f"Q: {' '.join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))}\nA:"
               for _ in range(5)]
    return [*prompts, "Q: blue dog\nA:", "x", prompts[0]]


def _stop_inside(plain: HFLM, tokens: list[int]) -> str:
    """A stop string the generation meets part way (a word from its middle)."""
    text = plain.tokenizer.decode(tokens, skip_special_tokens=True)
    middle = text[len(text) // 3: len(text) // 3 + 4]
    return middle if middle.strip() else "\n"


def test_generator_equals_per_request_generate_with_stop_sequences(plain_lm: HFLM) -> None:
    model, tokenizer = plain_lm.model, plain_lm.tokenizer
    prompts = [plain_lm.tok_encode(p) for p in _prompts(plain_lm)]
    limits = [12, 20, 7, 16, 25, 9, 5, 20]
    references = [_reference(model, p, n) for p, n in zip(prompts, limits, strict=True)]
    stops = [[_stop_inside(plain_lm, ref)] if i % 2 == 0 else [] for i, ref in enumerate(references)]
    requests = [GenerationRequest(p, n, s) for p, n, s in zip(prompts, limits, stops, strict=True)]
    # Two rows at a time: rows leave and waiting prompts join while others decode.
    generator = GreedyGenerator(CachedForward(model, torch.device("cpu")), tokenizer, eos_ids=[], max_rows=2)
    outputs = generator.generate(requests)
    for out, ref, request in zip(outputs, references, requests, strict=True):
        assert out == ref[: len(out)]
        if request.stop:
            cut = postprocess_generated_text(tokenizer.decode(ref), request.stop, None)
            assert postprocess_generated_text(tokenizer.decode(out), request.stop, None) == cut
            assert len(out) < len(ref), "the row should have stopped at its stop sequence"
        else:
            assert out == ref


def test_end_of_sequence_ends_a_row(plain_lm: HFLM) -> None:
    prompt = plain_lm.tok_encode(_prompts(plain_lm)[1])
    reference = _reference(plain_lm.model, prompt, 10)
    generator = GreedyGenerator(CachedForward(plain_lm.model, torch.device("cpu")), plain_lm.tokenizer,
                                eos_ids=[reference[3]], max_rows=4)
    [out] = generator.generate([GenerationRequest(prompt, 10, [])])
    assert out == reference[: reference.index(reference[3]) + 1]


def _requests(plain: HFLM, stop: str, extra: dict[str, object] | None = None) -> list[Instance]:
    kwargs = {"until": [stop, "Q:"], "max_gen_toks": 24, "do_sample": False, **(extra or {})}
    return [Instance("generate_until", {}, (p, dict(kwargs)), i) for i, p in enumerate(_prompts(plain))]


def test_generate_until_equals_todays_hf_backend(plain_lm: HFLM) -> None:
    probe = plain_lm.generate_until(_requests(plain_lm, "\n\n\n"), disable_tqdm=True)
    stop = probe[0][len(probe[0]) // 2: len(probe[0]) // 2 + 3]
    requests = _requests(plain_lm, stop)
    expected = plain_lm.generate_until(requests, disable_tqdm=True)
    fast = PrefixCachedHFLM(pretrained=plain_lm.model, tokenizer=plain_lm.tokenizer, device="cpu", generation_rows=3)
    assert fast.generate_until(requests, disable_tqdm=True) == expected
    assert fast.engine_paths == {"generate_until": GENERATION_PATH}
    # A model length that leaves little room: prompts are cut from the left as lm-eval does.
    short_plain = HFLM(pretrained=plain_lm.model, tokenizer=plain_lm.tokenizer, device="cpu", batch_size=3,
                       max_length=40)
    short_fast = PrefixCachedHFLM(pretrained=plain_lm.model, tokenizer=plain_lm.tokenizer, device="cpu",
                                  max_length=40)
    assert short_fast.generate_until(requests, disable_tqdm=True) == short_plain.generate_until(requests,
                                                                                              disable_tqdm=True)


def test_sampled_requests_keep_lm_evals_path(plain_lm: HFLM) -> None:
    fast = PrefixCachedHFLM(pretrained=plain_lm.model, tokenizer=plain_lm.tokenizer, device="cpu")
    requests = _requests(plain_lm, "\n", {"do_sample": True, "temperature": 0.7})[:2]
    assert len(fast.generate_until(requests, disable_tqdm=True)) == 2
    assert fast.engine_paths["generate_until"] == "plain: sampled generation"


def test_lora_generation_equals_todays_hf_backend(plain_lm: HFLM) -> None:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = HFLM(pretrained=str(resolve_builtin("builtin:tiny-llama")), device="cpu", batch_size=3).model
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False)
    lora = get_peft_model(base, config).eval()
    requests = _requests(plain_lm, "\n\n")[:4]
    expected = HFLM(pretrained=lora, tokenizer=plain_lm.tokenizer, device="cpu",
                    batch_size=3).generate_until(requests, disable_tqdm=True)
    assert expected != plain_lm.generate_until(requests, disable_tqdm=True)
    fast = PrefixCachedHFLM(pretrained=lora, tokenizer=plain_lm.tokenizer, device="cpu", generation_rows=2)
    assert fast.generate_until(requests, disable_tqdm=True) == expected


def test_a_model_with_an_attention_window_generates_on_lm_evals_path(plain_lm: HFLM) -> None:
    # the generator's cache has padding holes, and transformers places a window by cache slot
    windowed = windowed_twin(plain_lm.model, window=16)
    # shortest first: the engine's check runs on the first prompt, and passes there
    requests = sorted(_requests(plain_lm, "\n\n"), key=lambda request: len(request.args[0]))
    expected = HFLM(pretrained=windowed, tokenizer=plain_lm.tokenizer, device="cpu",
                    batch_size=3).generate_until(requests, disable_tqdm=True)
    assert expected != plain_lm.generate_until(requests, disable_tqdm=True)  # the window changes answers
    fast = PrefixCachedHFLM(pretrained=windowed, tokenizer=plain_lm.tokenizer, device="cpu",
                            generation_rows=3)
    assert fast.generate_until(requests, disable_tqdm=True) == expected
    assert fast.engine_paths == {"generate_until": "plain: 16-token attention window"}
