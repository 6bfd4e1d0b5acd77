"""Greedy generation for many prompts at once: shared prefixes prefilled once, rows stop on their own.

`model.generate` on a batch runs every row until the last one stops (lm-eval's stop criterion
ends the batch only when all rows have met a stop sequence) and prefills each prompt's few-shot
preamble again. Here:

- prompts are grouped by shared prefix (the same planning as the log-likelihood scorer); a
  group's prefix is run once and its rows attend to that one copy (`shared_prefix`; where the
  model's attention cannot, each row gets a copy of its cache);
- a row leaves the batch when it emits an end-of-sequence id, reaches its token limit, or its
  decoded tail contains a stop sequence (checked after every token), and waiting prompts of the
  same group take the free places (continuous batching), so a step always runs a full batch;
- every row's last prompt token is fed by the decode step itself;
- while the batch is small (`STEP_TOKENS`), with its next token a row feeds up to `draft_tokens`
  guesses from prompt lookup (the tokens that followed the latest earlier occurrence of its last
  words, `prompt_lookup`); the guesses greedy decoding confirms are kept with the token after them,
  the others' cache positions masked and dropped, so a step yields one or more tokens per row and
  the outputs stay greedy decoding's;
- the rows' keys/values live in buffers with room for the whole generation (`GrowingLayer`), so a
  step writes its positions in place instead of copying the cache, and grouped-query attention
  reads each key/value head once (`grouped_attention`).

Outputs are the generated token ids up to the stop; the caller decodes them and cuts at the
first stop sequence as lm-eval does, so an early stop changes nothing but the time taken.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.evaluate.cached_forward import CachedForward, RowCache, concat_rows, empty_rows
from harness.evaluate.prefix_scoring import plan_prefix_groups
from harness.evaluate.prompt_lookup import PromptLookup
from harness.evaluate.shared_prefix import SharedPrefix

# Draft tokens fed with each row's next token (prompt lookup): a small decode step is bound by reading
# the weights, so a few more tokens per row cost little; on SmolLM2 / GSM8K CoT on one CPU thread 3
# measured best at 4 rows (6 fed too many rejected tokens, 0 was ~1.5x slower).
DRAFT_TOKENS = 3
# ...but only while a step feeds at most this many tokens in all. Measured there (SmolLM2, one thread,
# ~900 cached positions): a step costs ~95 ms plus ~4.6 ms per token fed, and a row's 3 drafts yield
# ~2.3 tokens instead of 1, so drafts pay below ~16 rows and cost beyond; a full batch decodes plainly.
STEP_TOKENS = 32


@dataclass
class GenerationRequest:
    prompt: list[int]  # already truncated to leave room for max_new_tokens
    max_new_tokens: int
    stop: list[str]


@dataclass
class _Active:
    request: int
    lookup: PromptLookup  # the row's prompt and generated tokens, for draft tokens
    next_token: int  # the token the next step feeds (its key/value is not cached yet)
    generated: list[int] = field(default_factory=list)


class GreedyGenerator:
    """Greedy decoding of `GenerationRequest`s through `forward`, `max_rows` rows per step, each row
    feeding up to `draft_tokens` prompt-lookup guesses along with its next token (0: one token a step)."""

    def __init__(self, forward: CachedForward, tokenizer: Any, eos_ids: Sequence[int], max_rows: int = 16,
                 draft_tokens: int = DRAFT_TOKENS, share_prefix: bool = True) -> None:
        self.forward = forward
        self.share_prefix = share_prefix  # rows attend to one copy of their group's prefix (shared_prefix)
        self.tokenizer = tokenizer
        self.eos_ids = frozenset(int(i) for i in eos_ids)
        self.max_rows = max_rows
        self.draft_tokens = draft_tokens
        self._lookback: dict[str, int] = {}

    def generate(self, requests: Sequence[GenerationRequest],
                 on_done: Callable[[int, list[int]], None] | None = None) -> list[list[int]]:
        """Generated token ids per request, in order (empty when max_new_tokens is 0)."""
        outputs: list[list[int] | None] = [None] * len(requests)
        prompt_index: dict[tuple[int, ...], int] = {}
        for r in requests:
            prompt_index.setdefault(tuple(r.prompt), len(prompt_index))
        prompts = list(prompt_index)
        by_prompt: list[list[int]] = [[] for _ in prompts]
        for i, r in enumerate(requests):
            if r.max_new_tokens <= 0 or not r.prompt:
                outputs[i] = []
                continue
            by_prompt[prompt_index[tuple(r.prompt)]].append(i)
        for group in plan_prefix_groups(prompts):
            # Longest prompts first; repeats of one prompt are separate rows (cheap: same prefill rows).
            waiting = deque(i for p in sorted(group.contexts, key=lambda c: -len(prompts[c])) for i in by_prompt[p])
            if waiting:
                self._run_group(group.prefix_length, waiting, requests, outputs, on_done)
        assert all(o is not None for o in outputs), "a request was not generated"
        return outputs  # type: ignore[return-value]

    def _run_group(self, p: int, waiting: deque[int], requests: Sequence[GenerationRequest],
                   outputs: list[list[int] | None], on_done: Callable[[int, list[int]], None] | None) -> None:
        device = self.forward.device
        prefix = empty_rows(1, device)
        if p > 0:
            _, prefix = self.forward(prefix, [requests[waiting[0]].prompt[:p]], logits=False)
            if self.share_prefix:
                prefix = empty_rows(1, device, SharedPrefix.from_cache(prefix.cache))
        # Room to decode every waiting request without growing the cache buffers again.
        spare = max(requests[i].max_new_tokens for i in waiting) + self.draft_tokens + 1
        active: list[_Active] = []
        past = empty_rows(0, device)
        while waiting or active:
            if waiting and len(active) <= self.max_rows // 2:
                admitted = [waiting.popleft() for _ in range(min(self.max_rows - len(active), len(waiting)))]
                past = concat_rows(past, self._prefill(prefix, p, [requests[i].prompt for i in admitted]), spare)
                active += [_Active(i, PromptLookup(requests[i].prompt[:-1]), requests[i].prompt[-1])
                           for i in admitted]
            past, keep = self._step(past, active, requests, outputs, on_done)
            if len(keep) < len(active):
                past = past.select(torch.tensor(keep, dtype=torch.long, device=device), spare)
                active = [active[row] for row in keep]

    def _step(self, past: RowCache, active: list[_Active], requests: Sequence[GenerationRequest],
              outputs: list[list[int] | None],
              on_done: Callable[[int, list[int]], None] | None) -> tuple[RowCache, list[int]]:
        """One forward: each row's next token and its draft; the longest confirmed part is kept."""
        feeds = []
        drafts = min(self.draft_tokens, max(0, STEP_TOKENS // len(active) - 1))
        for state in active:
            state.lookup.extend([state.next_token])
            room = requests[state.request].max_new_tokens - len(state.generated) - 1
            feeds.append([state.next_token, *state.lookup.draft(min(drafts, room))])
        start = past.length
        logits, past = self.forward(past, feeds)
        assert logits is not None
        chosen = logits.argmax(dim=-1).tolist()
        used: list[int] = []
        keep: list[int] = []
        for row, (state, feed) in enumerate(zip(active, feeds, strict=True)):
            accepted = 1  # positions of the feed that greedy decoding confirms (cached keys stay valid)
            while accepted < len(feed) and feed[accepted] == chosen[row][accepted - 1]:
                accepted += 1
            used.append(accepted)
            new_tokens = chosen[row][:accepted]
            state.lookup.extend(feed[1:accepted])
            state.next_token = new_tokens[-1]
            if self._append(state, new_tokens, requests[state.request]):
                outputs[state.request] = state.generated
                if on_done is not None:
                    on_done(state.request, state.generated)
            else:
                keep.append(row)
        # Unconfirmed draft positions: masked for their row, dropped where no row used them.
        width = torch.arange(past.length - start, device=past.mask.device)[None, :]
        used_t = torch.tensor(used, dtype=torch.long, device=past.mask.device)
        past.mask[:, start:] *= (width < used_t[:, None]).long()
        past = RowCache(past.cache, past.mask, past.next_position - past.mask.new_tensor(
            [len(feed) for feed in feeds]) + used_t, past.shared)
        return past.keep_first(start + max(used)), keep

    def _append(self, state: _Active, tokens: list[int], request: GenerationRequest) -> bool:
        """Add tokens to the row's output one by one; True (and nothing after) once the row is done."""
        for token in tokens:
            state.generated.append(token)
            if self._finished(state, request):
                return True
        return False

    def _prefill(self, prefix: RowCache, p: int, prompts: list[list[int]]) -> RowCache:
        """The rows' caches holding each prompt but its last token (fed by the next decode step)."""
        # Shared: rows with nothing of their own yet; else each row gets a copy of the prefix's cache.
        past = prefix.select(torch.zeros(len(prompts), dtype=torch.long, device=self.forward.device))
        suffixes = [prompt[p:-1] for prompt in prompts]
        if not any(suffixes):
            return past
        # plan_prefix_groups keeps >= 1 suffix token in multi-token groups; one-token prompts are apart.
        _, past = self.forward(past, suffixes, logits=False)
        return past

    def _finished(self, state: _Active, request: GenerationRequest) -> bool:
        if state.generated[-1] in self.eos_ids or len(state.generated) >= request.max_new_tokens:
            return True
        if not request.stop:
            return False
        window = max(self._lookback_tokens(s) for s in request.stop)
        tail = self.tokenizer.decode(state.generated[-window:], skip_special_tokens=False)
        return any(s in tail for s in request.stop)

    def _lookback_tokens(self, stop: str) -> int:
        # As lm-eval's criterion, with more slack: a stop string may come out in other tokens than
        # its own encoding. Missing one costs time only (the caller cuts at the first stop).
        if stop not in self._lookback:
            self._lookback[stop] = len(self.tokenizer.encode(stop, add_special_tokens=False)) + 4
        return self._lookback[stop]
