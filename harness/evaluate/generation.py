"""Greedy generation for many prompts at once: shared prefixes prefilled once, rows stop on their own.

`model.generate` on a batch runs every row until the last one stops (lm-eval's stop criterion
ends the batch only when all rows have met a stop sequence) and prefills each prompt's few-shot
preamble again. Here:

- prompts are grouped by shared prefix (the same planning as the log-likelihood scorer); a
  group's prefix is run once and its cache copied to the rows that need it;
- a row leaves the batch when it emits an end-of-sequence id, reaches its token limit, or its
  decoded tail contains a stop sequence (checked after every token), and waiting prompts of the
  same group take the free places (continuous batching), so a step always runs a full batch;
- every row's last prompt token is fed by the decode step itself, so a step is one token per row.

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


@dataclass
class GenerationRequest:
    prompt: list[int]  # already truncated to leave room for max_new_tokens
    max_new_tokens: int
    stop: list[str]


@dataclass
class _Active:
    request: int
    generated: list[int] = field(default_factory=list)


class GreedyGenerator:
    """Greedy decoding of `GenerationRequest`s through `forward`, `max_rows` rows per step."""

    def __init__(self, forward: CachedForward, tokenizer: Any, eos_ids: Sequence[int], max_rows: int = 16) -> None:
        self.forward = forward
        self.tokenizer = tokenizer
        self.eos_ids = frozenset(int(i) for i in eos_ids)
        self.max_rows = max_rows
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
        active: list[_Active] = []
        past = empty_rows(0, device)
        next_tokens: list[int] = []
        while waiting or active:
            if waiting and len(active) <= self.max_rows // 2:
                admitted = [waiting.popleft() for _ in range(min(self.max_rows - len(active), len(waiting)))]
                past = concat_rows(past, self._prefill(prefix, p, [requests[i].prompt for i in admitted]))
                active += [_Active(i) for i in admitted]
                next_tokens += [requests[i].prompt[-1] for i in admitted]
            logits, past = self.forward(past, [[t] for t in next_tokens])
            assert logits is not None
            chosen = logits[:, -1, :].argmax(dim=-1).tolist()
            keep: list[int] = []
            for row, (state, token) in enumerate(zip(active, chosen, strict=True)):
                state.generated.append(token)
                if self._finished(state, requests[state.request]):
                    outputs[state.request] = state.generated
                    if on_done is not None:
                        on_done(state.request, state.generated)
                else:
                    keep.append(row)
            if len(keep) < len(active):
                past = past.select(torch.tensor(keep, dtype=torch.long, device=device))
                active = [active[row] for row in keep]
                chosen = [chosen[row] for row in keep]
            next_tokens = chosen

    def _prefill(self, prefix: RowCache, p: int, prompts: list[list[int]]) -> RowCache:
        """The rows' caches holding each prompt but its last token (fed by the next decode step)."""
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
