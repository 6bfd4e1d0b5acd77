"""lm-eval's HF model with atax's engines: shared-prefix log-likelihoods and batched greedy generation.

Everything lm-eval decides stays lm-eval's (its encoding of each context/continuation pair, the
left truncation of prompts, stop sequences, post-processing, the response-cache hook); only the
model work is replaced (`prefix_scoring`, `generation`). Before the first use the cached forward
is checked against a plain forward of the same tokens; a model whose forward cannot continue a
cache with padding and explicit positions (a custom adapter, a sliding-window cache) keeps lm-eval's
own path, and so, on a model with sliding-window or chunked attention, does generation and every
log-likelihood request longer than the window (`attention_window`). `engine_paths` records which path
each request type took and why.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import torch
import torch.nn.functional as F
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text

from harness.evaluate.cached_forward import (
    BatchTuner,
    CachedForward,
    attention_window,
    empty_rows,
    supports_cache,
)
from harness.evaluate.generation import GenerationRequest, GreedyGenerator
from harness.evaluate.item_rows import ScoringItem, run_items
from harness.evaluate.prefix_scoring import ROW_TOKENS, PrefixScorer
from harness.evaluate.shared_prefix import SharedPrefix

log = logging.getLogger(__name__)

PREFIX_PATH = "prefix-cache"
GENERATION_PATH = "batched-greedy"
# generation_config fields that change greedy choices; set to anything but their default, the
# request goes through model.generate instead.
_LOGIT_PROCESSORS = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_repetition_penalty": 1.0,
                     "bad_words_ids": None, "min_length": 0, "min_new_tokens": None, "forced_bos_token_id": None,
                     "forced_eos_token_id": None, "suppress_tokens": None, "begin_suppress_tokens": None,
                     "sequence_bias": None, "num_beams": 1, "penalty_alpha": None, "guidance_scale": None}


class PrefixCachedHFLM(HFLM):
    def __init__(self, *args: Any, prefix_cache: bool = True, generation_rows: int = 16,
                 token_budget: int = 512, kv_budget_bytes: int | None = None, row_tokens: int = ROW_TOKENS,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._row_tokens = row_tokens
        self.engine_paths: dict[str, str] = {}
        self._generation_rows = generation_rows
        self._kv_budget_bytes = kv_budget_bytes or default_kv_budget(self.device)
        self._tuner = BatchTuner(start=token_budget, limit=16384 if self.device.type == "cuda" else 4096)
        self._engine_error: str | None = None if prefix_cache else "disabled (prefix_cache: false)"
        self._share_error: str | None = None  # why generation copies prompts' common prefix into every row
        self._checked = not prefix_cache
        self._window = attention_window(self.model.config)  # sliding-window / chunked attention, else None

    def _forward(self) -> CachedForward:
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        return CachedForward(self.model, self.device, self.mixed_precision_dtype, pad)

    def _engine_usable(self, sample: list[int]) -> bool:
        """Check once, on real tokens, that the cached forward equals a plain one for this model."""
        if self._checked or self.backend != "causal":
            if self.backend != "causal" and self._engine_error is None:
                self._engine_error = f"{self.backend} models use lm-eval's path"
            return self._engine_error is None
        self._checked = True
        try:
            self._engine_error = check_cached_forward(self._forward(), self.model, sample)
        except Exception as exc:  # a model the cache path cannot drive: lm-eval's path, said why
            self._engine_error = f"cached forward failed: {type(exc).__name__}: {exc}"
        if self._engine_error is not None:
            log.warning("hf backend: using lm-eval's plain path (%s)", self._engine_error)
            return False
        self._share_error = check_shared_prefix(self._forward(), self.model, sample)
        if self._share_error is not None:
            log.info("hf backend: generation copies shared prefixes into every row (%s)", self._share_error)
        return True

    def _record(self, request_type: str, path: str) -> None:
        self.engine_paths.setdefault(request_type, path)

    def _loglikelihood_tokens(self, requests: list[Any], disable_tqdm: bool = False,
                              override_bs: int | None = None) -> list[tuple[float, bool]]:
        # lm-eval's own path takes requests over the model's length (it cuts them from the left per
        # continuation) and, on a model with an attention window, those longer than the window
        window = self._window
        lengths = [len(ctx) + len(cont) for _, ctx, cont in requests]
        longest = self.max_length + 1 if window is None else min(self.max_length + 1, window)
        fits = [i for i, length in enumerate(lengths) if length <= longest]
        if not fits or not self._engine_usable(list(requests[fits[0]][1]) + list(requests[fits[0]][2])):
            longer = "" if window is None else f" or the {window}-token attention window"
            reason = self._engine_error or f"every request is over the length{longer}"
            self._record("loglikelihood", f"plain: {reason}")
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        answers: list[Any] = [None] * len(requests)
        fitting = set(fits)
        elsewhere = [i for i in range(len(requests)) if i not in fitting]
        over_window = window is not None and any(lengths[i] <= self.max_length + 1 for i in elsewhere)
        self._record("loglikelihood", PREFIX_PATH + (f"; requests over the {window}-token attention window: "
                                                     "plain" if over_window else ""))
        if elsewhere:
            for i, answer in zip(elsewhere, super()._loglikelihood_tokens(
                    [requests[i] for i in elsewhere], disable_tqdm=True), strict=True):
                answers[i] = answer

        def hook(position: int, answer: tuple[float, bool]) -> None:
            index = fits[position]
            answers[index] = answer
            if requests[index][0] is not None:
                self.cache_hook.add_partial("loglikelihood", requests[index][0], answer)

        scorer = PrefixScorer(self._forward(), self.softmax_dtype, self._tuner, self._kv_budget_bytes,
                              self._row_tokens)
        scorer.score([(requests[i][1], requests[i][2]) for i in fits], on_answer=hook)
        return answers

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        groups: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(i)
        out: list[Any] = [None] * len(requests)
        for indices in groups.values():
            batch = [requests[i] for i in indices]
            reason = self._greedy_blocker(batch[0].args[1])
            if reason is None and not self._engine_usable(self.tok_encode(batch[0].args[0])[-64:] or [0, 0]):
                reason = self._engine_error
            if reason is not None:
                self._record("generate_until", f"plain: {reason}")
                answers = super().generate_until(batch, disable_tqdm=True)
            else:
                self._record("generate_until", GENERATION_PATH if self._share_error is None
                             else f"{GENERATION_PATH}, prefix copied per row: {self._share_error}")
                answers = self._generate_greedy(batch)
            for i, answer in zip(indices, answers, strict=True):
                out[i] = answer
        return out

    def _greedy_blocker(self, gen_kwargs: dict[str, Any]) -> str | None:
        """Why these requests must go through model.generate, or None."""
        if self.backend != "causal" or self.think_end_token is not None:
            return "not a plain causal model"
        kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
        extra = {k: v for k, v in kwargs.items() if k not in ("until", "max_gen_toks")}
        if extra.get("do_sample") or float(extra.get("temperature") or 0.0) != 0.0:
            return "sampled generation"
        unknown = set(extra) - {"do_sample", "temperature"}
        if unknown:
            return f"generation options {sorted(unknown)}"
        if self._window is not None:  # the generator's cache has holes: transformers would misplace it
            return f"{self._window}-token attention window"
        config = getattr(self.model, "generation_config", None)
        for name, default in _LOGIT_PROCESSORS.items():
            if config is not None and getattr(config, name, default) not in (default, None, [], 1.0):
                return f"generation_config.{name} is set"
        return None

    def _generate_greedy(self, batch: list[Any]) -> list[str]:
        gen_kwargs = batch[0].args[1]
        kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
        max_gen_toks = int(kwargs.pop("max_gen_toks"))
        max_ctx_len = self.max_length - max_gen_toks
        assert max_ctx_len > 0, f"max_gen_toks ({max_gen_toks}) must be below the model's length ({self.max_length})"
        contexts = [request.args[0] for request in batch]
        ids, mask = self.tok_batch_encode(contexts, left_truncate_len=max_ctx_len, truncation=self.truncation)
        prompts = [row[m.bool()].tolist() for row, m in zip(ids, mask, strict=True)]
        generator = GreedyGenerator(self._forward(), self.tokenizer, _eos_ids(self.model, self.tokenizer),
                                    self._generation_rows, share_prefix=self._share_error is None)
        answers: list[str] = [""] * len(batch)

        def done(index: int, tokens: list[int]) -> None:
            text = postprocess_generated_text(self.tok_decode(tokens), until, None)
            answers[index] = text
            self.cache_hook.add_partial("generate_until", (contexts[index], gen_kwargs), text)

        generator.generate([GenerationRequest(p, max_gen_toks, until) for p in prompts], on_done=done)
        return answers


def default_kv_budget(device: torch.device) -> int:
    """Bytes of cached keys/values the scorer's rows may copy per forward: 512 MiB on a CPU; on a GPU a
    quarter of the memory free once the model is loaded (a 7B's 5-shot MMLU preamble alone is ~256 MiB
    a row, so a CPU-sized budget would leave one row per forward there)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(512 << 20, free // 4)
    return 512 << 20


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """The ids model.generate stops a row at: its generation config's (the tokenizer's if unset)."""
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None) if config is not None else None
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


def check_cached_forward(forward: CachedForward, model: Any, tokens: list[int]) -> str | None:
    """None when `tokens` run as the engines run them give a plain forward's log-probabilities; else
    what differs. A cached prefix, then two rows of different lengths (one padded), then each row's
    rest after the padding (the generator's steps); and the scorer's packed items: two items in one
    row and one in another, each a suffix after the prefix and its continuations as a trie."""
    tokens, n, q, r = _check_tokens(tokens)
    _, prefix = forward(empty_rows(1, forward.device), [tokens[:q]], logits=False)
    if not supports_cache(prefix.cache):
        return f"the model returns a {type(prefix.cache).__name__}, not a plain DynamicCache"
    two = torch.zeros(2, dtype=torch.long, device=forward.device)
    _, middle = forward(prefix.select(two), [tokens[q:r], tokens[q:r - 1]], logits=False)
    logits, _ = forward(middle, [tokens[r:], tokens[r - 1:]])
    assert logits is not None
    # (suffix end, segment ends): suffix tokens[q:end], segments tokens[end:segment end]
    layout = [[(r, (n, n - 1)), (q + 1, (r,))], [(r - 1, (n,))]]
    items = [[ScoringItem(tokens[q:end], [tokens[end:stop] for stop in stops]) for end, stops in row]
             for row in layout]
    packed = run_items(forward, prefix.select(two), items)
    checks = [(logits[0, : n - r], r), (logits[1, : n - r + 1], r - 1)]
    number = 0
    for row in layout:
        for end, _ in row:
            checks.append((packed.logits[packed.last[number]][None], end - 1))
            checks += [(packed.logits[at], end) for at in packed.segments[number]]
            number += 1
    return _differs(forward, model, tokens, checks)


def check_shared_prefix(forward: CachedForward, model: Any, tokens: list[int]) -> str | None:
    """None when rows continuing one shared copy of a prefix (`shared_prefix`) give a plain forward's
    log-probabilities: rows of equal then of different lengths, each continued after the padding."""
    tokens, n, q, r = _check_tokens(tokens)
    _, prefix = forward(empty_rows(1, forward.device), [tokens[:q]], logits=False)
    checks = []
    try:
        shared = SharedPrefix.from_cache(prefix.cache)
        for first, second in ((tokens[q:r], tokens[q:r]), (tokens[q:r], tokens[q:r - 1])):
            _, middle = forward(empty_rows(2, forward.device, shared), [first, second], logits=False)
            logits, _ = forward(middle, [tokens[q + len(first):], tokens[q + len(second):]])
            assert logits is not None
            checks += [(logits[0, : n - q - len(first)], q + len(first)),
                       (logits[1, : n - q - len(second)], q + len(second))]
    except (RuntimeError, AttributeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return _differs(forward, model, tokens, checks)


def _check_tokens(tokens: list[int]) -> tuple[list[int], int, int, int]:
    tokens = (tokens * 6)[: max(6, len(tokens))]
    n = len(tokens)
    return tokens, n, n // 3, 2 * n // 3


def _differs(forward: CachedForward, model: Any, tokens: list[int],
             checks: list[tuple[torch.Tensor, int]]) -> str | None:
    """What differs between each (logits, first position) and a plain forward's log-probabilities.

    In half precision the model's own answers move with the batch around a sequence (SmolLM2 in
    bfloat16: 0.36 nats for the same tokens beside a longer row), so there the tolerance is four times
    that movement, measured on these tokens, and at least 0.1; a path that misplaces positions or
    masks is off by whole nats on a real model."""
    with torch.no_grad(), forward.autocast():
        plain = model(input_ids=torch.tensor([tokens], device=forward.device)).logits[0]
    expected = F.log_softmax(plain.float(), dim=-1)
    if plain.dtype == torch.float32:
        tolerance = {"atol": 1e-3, "rtol": 1e-4}
    else:
        tolerance = {"atol": max(0.1, 4 * _padding_noise(forward, model, tokens, expected)), "rtol": 0.02}
    for got_logits, start in checks:
        got = F.log_softmax(got_logits.float(), dim=-1)
        want = expected[start:start + got.shape[0]]
        if not torch.allclose(got, want, **tolerance):
            return f"cached log-probabilities differ from a plain forward by up to {float((got - want).abs().max()):.3g}"
    return None


def _padding_noise(forward: CachedForward, model: Any, tokens: list[int], alone: torch.Tensor) -> float:
    """How far the model's own log-probabilities for `tokens` move when the same forward runs them in a
    batch beside a longer row, right-padded: kernels and shapes change, nothing else does (with causal
    attention the padding comes after them, so a model that mishandles masks or positions shows no more
    movement here than a sound one)."""
    n, extra = len(tokens), 7
    ids = torch.tensor([tokens + [tokens[0]] * extra, tokens + tokens[:extra]], device=forward.device)
    mask = torch.ones_like(ids)
    mask[0, n:] = 0
    with torch.no_grad(), forward.autocast():
        batched = model(input_ids=ids, attention_mask=mask).logits[0, :n]
    return float((F.log_softmax(batched.float(), dim=-1) - alone).abs().max())
