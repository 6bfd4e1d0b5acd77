"""Shared-prefix log-likelihoods equal lm-eval's own HF model per item (tiny model, plain and LoRA)."""

from __future__ import annotations

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from model_fixtures import windowed_twin
from scoring_fixtures import assert_same, mc_requests

from harness.builtin import resolve_builtin
from harness.evaluate.cached_forward import attention_window
from harness.evaluate.item_rows import SegmentTrie, pack_items
from harness.evaluate.prefix_hflm import PREFIX_PATH, PrefixCachedHFLM
from harness.evaluate.prefix_scoring import plan_prefix_groups, planned_tokens


@pytest.fixture(scope="module")
def plain_lm() -> HFLM:
    return HFLM(pretrained=str(resolve_builtin("builtin:tiny-llama")), device="cpu", batch_size=4)


def _fast(plain: HFLM, model: torch.nn.Module | None = None, **kwargs: object) -> PrefixCachedHFLM:
    return PrefixCachedHFLM(pretrained=model if model is not None else plain.model, tokenizer=plain.tokenizer,
                            device="cpu", batch_size=4, **kwargs)


def test_plan_groups_shared_preambles_pooled_rest_and_one_token_contexts() -> None:
    preamble_a, preamble_b = tuple(range(100, 140)), tuple(range(200, 230))
    contexts = [preamble_a + (1, 2, 3), preamble_b + (5, 6), preamble_a + (1, 9), (7, 8, 9, 10), (11,),
                preamble_b + (4,), (12, 13)]
    groups = plan_prefix_groups(contexts)
    by_members = {frozenset(g.contexts): g.prefix_length for g in groups}
    assert by_members[frozenset({0, 2})] == 40  # each suffix keeps >= 2 tokens (one to run, one to feed)
    assert by_members[frozenset({1, 5})] == 29  # preamble_b's last token stays with the shorter context
    assert by_members[frozenset({3, 6})] == 0  # nothing worth sharing: pooled
    assert by_members[frozenset({4})] == 0  # one token: nothing to cache
    assert sorted(i for g in groups for i in g.contexts) == list(range(len(contexts)))


def test_pack_items_fills_rows_longest_first_within_the_width() -> None:
    lengths = [5, 9, 3, 7, 2, 12]
    rows = pack_items(lengths, 12)
    assert rows == [[5], [1, 2], [3, 0], [4]]
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert pack_items([20, 3], 12) == [[0], [1]]  # an item wider than a row gets its own


def test_segment_trie_runs_a_shared_token_once_in_depth_first_order() -> None:
    trie = SegmentTrie.of([[5, 6, 7], [5, 8], [5, 6], [9]])
    assert trie.tokens == [5, 6, 7, 8, 9]  # [5], [5, 6] shared; sorted: 5 6 7 | 8 | 9
    assert trie.depths == [0, 1, 2, 1, 0]
    assert trie.ends == [4, 3, 3, 4, 5]  # a node's subtree is the nodes up to its end
    assert trie.paths == [[0, 1, 2], [0, 3], [0, 1], [4]]


def test_choices_sharing_their_first_tokens_equal_lm_evals_hf_model(plain_lm: HFLM) -> None:
    """Choices that share leading words, one a prefix of another, one a prefix of another's head."""
    choices = [" the red cat", " the red cat sat on", " the red dog", " the blue", " the", " a mat",
               " the red"]
    pairs = [(ctx, choice) for ctx in ("Q: what sat?\nA:", "Q: 42 ideas\nA:") for choice in choices]
    requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    expected = plain_lm.loglikelihood(requests, disable_tqdm=True)
    for packing in ({}, {"row_tokens": 1}):
        assert_same(expected, _fast(plain_lm, **packing).loglikelihood(requests, disable_tqdm=True))


def test_planned_tokens_are_the_tokens_the_scorer_feeds(plain_lm: HFLM,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.evaluate.prefix_scoring as scoring

    requests = mc_requests(plain_lm, seed=5)
    pairs = [plain_lm._encode_pair(*r.args) for r in requests]
    fed: list[int] = []
    real_forward, real_run_items = scoring.CachedForward.__call__, scoring.run_items

    def prefix_forward(self, past, rows, **kwargs):  # type: ignore[no-untyped-def]
        fed.append(sum(len(row) for row in rows))
        return real_forward(self, past, rows, **kwargs)

    def counted_run_items(forward, past, rows):  # type: ignore[no-untyped-def]
        fed.append(sum(item.length for row in rows for item in row))
        return real_run_items(forward, past, rows)

    fast = _fast(plain_lm)
    fast.loglikelihood(requests[:1], disable_tqdm=True)  # the first call's check of the cache path
    monkeypatch.setattr(scoring.CachedForward, "__call__", prefix_forward)
    monkeypatch.setattr(scoring, "run_items", counted_run_items)
    fast.loglikelihood(requests, disable_tqdm=True)
    assert planned_tokens(pairs) == sum(fed)
    # Fewer than lm-eval's context + continuation per request: the preambles and shared heads run once.
    assert planned_tokens(pairs) < 0.5 * sum(len(c) + len(x) - 1 for c, x in pairs)


def test_per_item_loglikelihoods_equal_lm_evals_hf_model(plain_lm: HFLM) -> None:
    requests = mc_requests(plain_lm)
    expected = plain_lm.loglikelihood(requests, disable_tqdm=True)
    assert any(greedy for _, greedy in expected), "the requests should include a greedy continuation"
    fast = _fast(plain_lm)
    assert_same(expected, fast.loglikelihood(requests, disable_tqdm=True))
    assert fast.engine_paths == {"loglikelihood": PREFIX_PATH}
    # Tiny budgets: many forwards per level, continuation rows split across batches.
    assert_same(expected, _fast(plain_lm, token_budget=16, kv_budget_bytes=1 << 20).loglikelihood(requests, disable_tqdm=True))
    # One item per row (no packing), and every item of a group in one long row.
    for packing in ({"row_tokens": 1}, {"row_tokens": 4096, "token_budget": 4096}):
        assert_same(expected, _fast(plain_lm, **packing).loglikelihood(requests, disable_tqdm=True))


def test_kv_budget_is_a_quarter_of_free_gpu_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.evaluate.prefix_hflm import default_kv_budget

    assert default_kv_budget(torch.device("cpu")) == 512 << 20
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (60 << 30, 80 << 30))
    assert default_kv_budget(torch.device("cuda", 0)) == 15 << 30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1 << 30, 80 << 30))
    assert default_kv_budget(torch.device("cuda", 0)) == 512 << 20  # never below the CPU's


def test_without_prefix_cache_is_lm_evals_path(plain_lm: HFLM) -> None:
    requests = mc_requests(plain_lm, seed=1)
    fast, off = _fast(plain_lm), _fast(plain_lm, prefix_cache=False)
    assert_same(off.loglikelihood(requests, disable_tqdm=True), fast.loglikelihood(requests, disable_tqdm=True))
    assert off.engine_paths["loglikelihood"].startswith("plain: disabled")


def test_requests_over_the_models_length_are_truncated_as_lm_eval_does(plain_lm: HFLM) -> None:
    requests = mc_requests(plain_lm, seed=2)
    short = HFLM(pretrained=plain_lm.model, tokenizer=plain_lm.tokenizer, device="cpu", batch_size=4, max_length=48)
    fast = _fast(plain_lm, max_length=48)
    assert_same(short.loglikelihood(requests, disable_tqdm=True), fast.loglikelihood(requests, disable_tqdm=True))
    assert fast.engine_paths == {"loglikelihood": PREFIX_PATH}


def test_lora_model(plain_lm: HFLM) -> None:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = HFLM(pretrained=str(resolve_builtin("builtin:tiny-llama")), device="cpu", batch_size=4).model
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False)
    lora = get_peft_model(base, config).eval()
    requests = mc_requests(plain_lm, seed=3)
    expected = HFLM(pretrained=lora, tokenizer=plain_lm.tokenizer, device="cpu",
                    batch_size=4).loglikelihood(requests, disable_tqdm=True)
    assert abs(expected[0][0] - plain_lm.loglikelihood(requests[:1], disable_tqdm=True)[0][0]) > 1e-3
    fast = _fast(plain_lm, model=lora)
    assert_same(expected, fast.loglikelihood(requests, disable_tqdm=True))
    assert fast.engine_paths == {"loglikelihood": PREFIX_PATH}


def test_requests_longer_than_an_attention_window_take_lm_evals_path(plain_lm: HFLM) -> None:
    # transformers applies a sliding window only to masks it builds; the scorer brings its own
    windowed = windowed_twin(plain_lm.model, window=24)
    requests = mc_requests(plain_lm, seed=5)[::-1]  # short first: the first request passes the engine's check
    expected = HFLM(pretrained=windowed, tokenizer=plain_lm.tokenizer, device="cpu",
                    batch_size=4).loglikelihood(requests, disable_tqdm=True)
    unwindowed = plain_lm.loglikelihood(requests, disable_tqdm=True)
    assert max(abs(want[0] - other[0]) for want, other in zip(expected, unwindowed, strict=True)) > 0.01
    fast = _fast(plain_lm, model=windowed)
    assert_same(expected, fast.loglikelihood(requests, disable_tqdm=True))
    over = "requests over the 24-token attention window: plain"
    assert fast.engine_paths == {"loglikelihood": f"{PREFIX_PATH}; {over}"}
    tiny = _fast(plain_lm, model=windowed_twin(plain_lm.model, window=3))
    assert_same(HFLM(pretrained=tiny.model, tokenizer=plain_lm.tokenizer, device="cpu",
                      batch_size=4).loglikelihood(requests, disable_tqdm=True),
                 tiny.loglikelihood(requests, disable_tqdm=True))
    every = "every request is over the length or the 3-token attention window"
    assert tiny.engine_paths == {"loglikelihood": f"plain: {every}"}


@pytest.mark.parametrize(("kind", "options", "window"), [
    ("llama", {}, None), ("mistral", {"sliding_window": None}, None), ("mistral", {}, 4096),
    ("qwen2", {}, None), ("qwen2", {"use_sliding_window": True, "sliding_window": 512}, 512),
    ("gemma2", {"sliding_window": 1024}, 1024), ("llama4_text", {"attention_chunk_size": 8192}, 8192)])
def test_attention_window_of_real_configurations(kind: str, options: dict[str, object],
                                                  window: int | None) -> None:
    from transformers import AutoConfig

    assert attention_window(AutoConfig.for_model(kind, **options)) == window


def _ignoring_positions(model: torch.nn.Module) -> torch.nn.Module:
    """The model with a forward that drops position ids and the padding mask (as a custom adapter might)."""
    forward = model.forward

    def without_positions(input_ids: torch.Tensor, **kwargs: object) -> object:
        kwargs.pop("position_ids", None)
        kwargs.pop("attention_mask", None)
        return forward(input_ids=input_ids, **kwargs)

    model.forward = without_positions
    return model


def test_a_model_the_cache_path_cannot_drive_falls_back_and_says_so(plain_lm: HFLM) -> None:
    requests = mc_requests(plain_lm, seed=4)
    model = HFLM(pretrained=str(resolve_builtin("builtin:tiny-llama")), device="cpu", batch_size=4).model
    fast = _fast(plain_lm, model=_ignoring_positions(model))
    assert_same(plain_lm.loglikelihood(requests, disable_tqdm=True), fast.loglikelihood(requests, disable_tqdm=True))
    assert fast.engine_paths["loglikelihood"].startswith("plain: cached log-probabilities differ")


def test_eval_runs_record_the_scoring_path(tmp_path) -> None:
    from harness.evaluate.runner import EvalRequest, run_eval

    request = EvalRequest("builtin:tiny-llama", "knowledge", {"benchmarks": ["arc_challenge"], "limit": 3,
                                                              "data_dir": "builtin:toy-knowledge"},
                          "hf", {}, tmp_path, cache=False)
    [result] = run_eval(request).results
    assert result.meta["engine_paths"] == {"loglikelihood": PREFIX_PATH}
