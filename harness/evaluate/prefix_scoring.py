"""Log-likelihoods of (context, continuation) token pairs with every shared prefix computed once.

lm-eval's HF model runs context + continuation for every request: the few-shot preamble of a
task once per choice of every item, the item's own text once per choice. Here each token is run
once:

    group prefix P  (the few-shot preamble shared by a task's items: longest common prefix of
                     neighbouring contexts in sorted order)             one row, cached
    items           (per distinct context: its suffix context[len(P):], then each distinct
                     continuation[:-1] as a trie, under a tree mask; `item_rows`), several
                     items to a row, rows continuing copies of the prefix cache, batched

Only the scored positions (an item's last context token, every continuation-head token) reach the
output head.

The token ids scored are exactly the ones lm-eval gives (its own encoding of each pair); the
answer is lm-eval's: (sum of the continuation's log-probabilities, whether greedy decoding
reproduces it). Requests whose context + continuation exceed the model's length are left to the
caller (lm-eval truncates those from the left, per continuation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from harness.evaluate.cached_forward import BatchTuner, CachedForward, RowCache, empty_rows
from harness.evaluate.item_rows import ItemLogits, ScoringItem, common_length, pack_items, run_items

Requests = Sequence[tuple[Sequence[int], Sequence[int]]]  # (context ids, continuation ids) pairs
# A prefix shorter than this is not worth its own group (its rows are pooled, prefix empty).
MIN_SHARED_TOKENS = 16
# Tokens per packed row: more items per row is less padding but more masked-out attention. On SmolLM2
# 128 beat 256 by 7% on ARC-c and 4% on TruthfulQA-MC1 (200 and 100 items), MMLU even.
ROW_TOKENS = 128


@dataclass
class PrefixGroup:
    prefix_length: int
    contexts: list[int] = field(default_factory=list)  # indices into the distinct contexts


def plan_prefix_groups(contexts: Sequence[tuple[int, ...]], min_shared: int = MIN_SHARED_TOKENS) -> list[PrefixGroup]:
    """Partition distinct contexts into groups sharing a prefix (each suffix keeps >= 2 tokens).

    Contexts are visited in sorted order; one joins the open group when the prefix the group
    would then share still saves as many tokens as the group saved without it
    (n·l >= (n-1)·shared). Groups that share less than `min_shared` tokens are pooled into one
    group with an empty prefix; contexts of one token form their own (nothing to cache).
    """
    order = sorted(range(len(contexts)), key=lambda i: contexts[i])
    groups: list[PrefixGroup] = []
    pooled = PrefixGroup(0)
    single_token = PrefixGroup(0)
    current: list[int] = []
    shared = 0

    def close() -> None:
        if len(current) >= 2 and shared >= min_shared:
            groups.append(PrefixGroup(shared, list(current)))
        else:
            pooled.contexts.extend(current)

    for index in order:
        ctx = contexts[index]
        if len(ctx) < 2:
            single_token.contexts.append(index)
            continue
        if current:
            joined = min(shared, common_length(contexts[current[-1]], ctx), len(ctx) - 2)
            if joined >= min_shared and len(current) * joined >= (len(current) - 1) * shared:
                current.append(index)
                shared = joined
                continue
            close()
        current, shared = [index], len(ctx) - 2
    if current:
        close()
    return groups + [g for g in (pooled, single_token) if g.contexts]


@dataclass
class _Plan:
    """The distinct contexts of a batch of requests, the requests of each, and their prefix groups."""

    contexts: list[tuple[int, ...]]
    by_context: list[list[int]]  # request indices per distinct context
    groups: list[PrefixGroup]

    @classmethod
    def of(cls, requests: Requests, min_shared: int = MIN_SHARED_TOKENS) -> _Plan:
        context_index: dict[tuple[int, ...], int] = {}
        for ctx, cont in requests:
            if not ctx or not cont:
                raise ValueError("every request needs a non-empty context and continuation "
                                 "(lm-eval's encoding)")
            context_index.setdefault(tuple(ctx), len(context_index))
        contexts = list(context_index)
        by_context: list[list[int]] = [[] for _ in contexts]
        for i, (ctx, _) in enumerate(requests):
            by_context[context_index[tuple(ctx)]].append(i)
        return cls(contexts, by_context, plan_prefix_groups(contexts, min_shared))

    def items(self, group: PrefixGroup, requests: Requests
              ) -> tuple[list[ScoringItem], list[dict[tuple[int, ...], int]]]:
        """Per context of the group: its item (suffix after the prefix, distinct continuation heads) and
        where each head is among the item's segments."""
        items, heads = [], []
        for c in group.contexts:
            head_index: dict[tuple[int, ...], int] = {}
            for r in self.by_context[c]:
                if len(requests[r][1]) > 1:
                    head_index.setdefault(tuple(requests[r][1][:-1]), len(head_index))
            suffix = list(self.contexts[c][group.prefix_length:])
            items.append(ScoringItem(suffix, [list(h) for h in head_index]))
            heads.append(head_index)
        return items, heads


def planned_tokens(requests: Requests, min_shared: int = MIN_SHARED_TOKENS) -> int:
    """Tokens `PrefixScorer` feeds the model for these requests, padding aside: each group's prefix
    once, each item's suffix and its continuation heads' trie (for cost estimates)."""
    plan = _Plan.of(requests, min_shared)
    return sum(group.prefix_length + sum(item.length for item in plan.items(group, requests)[0])
               for group in plan.groups)


class PrefixScorer:
    """Scores requests through `forward`: items packed `row_tokens` to a row, rows batched under
    `tuner`'s token budget and `kv_budget_bytes` of cached keys/values per forward (the rows' copies of
    their group's prefix cache)."""

    def __init__(self, forward: CachedForward, log_softmax_dtype: torch.dtype | None = None,
                 tuner: BatchTuner | None = None, kv_budget_bytes: int = 512 << 20,
                 row_tokens: int = ROW_TOKENS) -> None:
        self.forward = forward
        self.log_softmax_dtype = log_softmax_dtype
        self.tuner = tuner or BatchTuner()
        self.kv_budget_bytes = kv_budget_bytes
        self.kv_budget = 8192  # cached positions per forward, until a cache tells its size per position
        self.row_tokens = row_tokens

    def _learn_kv_size(self, past: RowCache) -> None:
        if past.cache is None or not past.rows or not past.length:
            return
        per_position = sum((layer.keys.numel() + layer.values.numel()) * layer.keys.element_size()
                           for layer in past.cache.layers) // (past.rows * past.length)
        self.kv_budget = max(1, self.kv_budget_bytes // max(per_position, 1))

    def score(self, requests: Requests,
              on_answer: Callable[[int, tuple[float, bool]], None] | None = None) -> list[tuple[float, bool]]:
        """(log-likelihood, is_greedy) per (context ids, continuation ids) request, in order."""
        plan = _Plan.of(requests)
        answers: list[tuple[float, bool] | None] = [None] * len(requests)
        for group in plan.groups:
            self._score_group(plan, group, requests, answers, on_answer)
        assert all(a is not None for a in answers), "a request was not scored"
        return answers  # type: ignore[return-value]

    def _score_group(self, plan: _Plan, group: PrefixGroup, requests: Requests,
                     answers: list[tuple[float, bool] | None],
                     on_answer: Callable[[int, tuple[float, bool]], None] | None) -> None:
        device = self.forward.device
        p = group.prefix_length
        prefix = empty_rows(1, device)
        if p > 0:
            _, prefix = self.forward(prefix, [list(plan.contexts[group.contexts[0]][:p])], logits=False)
            self._learn_kv_size(prefix)
        items, heads = plan.items(group, requests)
        lengths = [item.length for item in items]
        rows = pack_items(lengths, max(self.row_tokens, *lengths))
        start = 0
        while start < len(rows):
            chunk = self._chunk(rows[start:], lengths, p)
            start += len(chunk)
            past = prefix.select(torch.zeros(len(chunk), dtype=torch.long, device=device))
            began = self.forward.clock()
            out = run_items(self.forward, past, [[items[i] for i in row] for row in chunk])
            order = [i for row in chunk for i in row]
            self._answer(out, [(group.contexts[i], heads[i]) for i in order], plan.by_context, requests,
                         answers, on_answer)
            self.tuner.observe(len(chunk) * max(sum(lengths[i] for i in row) for row in chunk),
                               self.forward.clock() - began)

    def _chunk(self, rows: list[list[int]], lengths: list[int], p: int) -> list[list[int]]:
        """The next rows run together: padded tokens within the tuner's budget, cache within kv_budget."""
        chunk: list[list[int]] = []
        width = 0
        for row in rows:
            width = max(width, sum(lengths[i] for i in row))
            n = len(chunk) + 1
            if chunk and (n * width > self.tuner.budget or n * (p + width) > self.kv_budget):
                break
            chunk.append(row)
        return chunk

    def _answer(self, out: ItemLogits, items: list[tuple[int, dict[tuple[int, ...], int]]],
                by_context: list[list[int]], requests: Requests,
                answers: list[tuple[float, bool] | None],
                on_answer: Callable[[int, tuple[float, bool]], None] | None) -> None:
        """Every request of the forward's items from the scored positions' logits (one gather for all)."""
        logit_rows: list[int] = []
        tokens: list[int] = []
        spans: list[tuple[int, int, int]] = []  # (request, first, end) into logit_rows
        for number, (context, head_index) in enumerate(items):
            for r in by_context[context]:
                cont = requests[r][1]
                first = len(logit_rows)
                logit_rows.append(out.last[number])
                if len(cont) > 1:
                    logit_rows.extend(out.segments[number][head_index[tuple(cont[:-1])]])
                tokens.extend(cont)
                spans.append((r, first, len(logit_rows)))
        # log_softmax as lm-eval computes it: its float32 sum over the vocabulary rounds low (~2e-5 per
        # token on a 49k vocabulary), which logsumexp would not, and the answers must be lm-eval's.
        logprobs = F.log_softmax(out.logits, dim=-1, dtype=self.log_softmax_dtype)
        index = torch.tensor(logit_rows, dtype=torch.long, device=logprobs.device)
        wanted = torch.tensor(tokens, dtype=torch.long, device=logprobs.device)
        picked = logprobs[index, wanted].tolist()
        greedy = (logprobs.argmax(dim=-1)[index] == wanted).tolist()
        for r, first, end in spans:
            answer = (float(sum(picked[first:end])), all(greedy[first:end]))
            answers[r] = answer
            if on_answer is not None:
                on_answer(r, answer)
