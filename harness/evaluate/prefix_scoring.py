"""Log-likelihoods of (context, continuation) token pairs with every shared prefix computed once.

lm-eval's HF model runs context + continuation for every request: the few-shot preamble of a
task once per choice of every item, the item's own text once per choice. Here requests are
grouped in three levels and each level is run once, from the cache of the level above:

    group prefix P  (the few-shot preamble shared by a task's items: longest common prefix of
                     neighbouring contexts in sorted order)             one row
    context suffix S = context[len(P):-1]    (one row per distinct context, batched)
    last context token + continuation[:-1]   (one segment per distinct (context, continuation[:-1]);
                                              a context's segments side by side in its own row under
                                              a block-causal 4-D mask, so the context's cache is not
                                              copied per choice; the logits score the continuation)

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

# A prefix shorter than this is not worth its own group (its rows are pooled, prefix empty).
MIN_SHARED_TOKENS = 16


@dataclass
class PrefixGroup:
    prefix_length: int
    contexts: list[int] = field(default_factory=list)  # indices into the distinct contexts


def _common_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


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
            joined = min(shared, _common_length(contexts[current[-1]], ctx), len(ctx) - 2)
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
class _Row:
    """One forward row of the last level: a context's last token + a continuation's head."""

    context: int
    tokens: list[int]
    requests: list[int]


class PrefixScorer:
    """Scores requests through `forward`, batching rows under `tuner`'s token budget and
    `kv_budget_bytes` of cached keys/values per forward (the rows' copies of their context cache)."""

    def __init__(self, forward: CachedForward, log_softmax_dtype: torch.dtype | None = None,
                 tuner: BatchTuner | None = None, kv_budget_bytes: int = 512 << 20, packed: bool = True) -> None:
        self.forward = forward
        self.packed = packed  # continuations side by side under a 4-D mask; False: one cache copy per row
        self.log_softmax_dtype = log_softmax_dtype
        self.tuner = tuner or BatchTuner()
        self.kv_budget_bytes = kv_budget_bytes
        self.kv_budget = 8192  # cached positions per forward, until a cache tells its size per position

    def _learn_kv_size(self, past: RowCache) -> None:
        if past.cache is None or not past.rows or not past.length:
            return
        per_position = sum((layer.keys.numel() + layer.values.numel()) * layer.keys.element_size()
                           for layer in past.cache.layers) // (past.rows * past.length)
        self.kv_budget = max(1, self.kv_budget_bytes // max(per_position, 1))

    def score(self, requests: Sequence[tuple[Sequence[int], Sequence[int]]],
              on_answer: Callable[[int, tuple[float, bool]], None] | None = None) -> list[tuple[float, bool]]:
        """(log-likelihood, is_greedy) per (context ids, continuation ids) request, in order."""
        context_index: dict[tuple[int, ...], int] = {}
        for ctx, cont in requests:
            if not ctx or not cont:
                raise ValueError("every request needs a non-empty context and continuation (lm-eval's encoding)")
            context_index.setdefault(tuple(ctx), len(context_index))
        contexts = list(context_index)
        by_context: list[list[int]] = [[] for _ in contexts]
        for i, (ctx, _) in enumerate(requests):
            by_context[context_index[tuple(ctx)]].append(i)
        answers: list[tuple[float, bool] | None] = [None] * len(requests)
        for group in plan_prefix_groups(contexts):
            self._score_group(group, contexts, by_context, requests, answers, on_answer)
        assert all(a is not None for a in answers), "a request was not scored"
        return answers  # type: ignore[return-value]

    def _score_group(self, group: PrefixGroup, contexts: list[tuple[int, ...]], by_context: list[list[int]],
                     requests: Sequence[tuple[Sequence[int], Sequence[int]]],
                     answers: list[tuple[float, bool] | None],
                     on_answer: Callable[[int, tuple[float, bool]], None] | None) -> None:
        device = self.forward.device
        p = group.prefix_length
        prefix = empty_rows(1, device)
        if p > 0:
            _, prefix = self.forward(prefix, [list(contexts[group.contexts[0]][:p])], logits=False)
            self._learn_kv_size(prefix)
        # Longest suffixes first: similar lengths share a forward, little padding.
        ordered = sorted(group.contexts, key=lambda c: -len(contexts[c]))
        packing = {c: sum(len(requests[r][1]) for r in by_context[c]) for c in ordered} if self.packed else {}
        start = 0
        while start < len(ordered):
            chunk = self._chunk(ordered[start:], contexts, p, packing)
            start += len(chunk)
            past = prefix.select(torch.zeros(len(chunk), dtype=torch.long, device=device))
            suffixes = [list(contexts[c][p:-1]) for c in chunk]
            if any(suffixes):
                began = self.forward.clock()
                _, past = self.forward(past, suffixes, logits=False)
                self._learn_kv_size(past)
                self.tuner.observe(past.rows * max(len(s) for s in suffixes), self.forward.clock() - began)
            rows = self._rows(chunk, contexts, by_context, requests)
            slot = {c: i for i, c in enumerate(chunk)}
            if self.packed:
                self._score_packed(rows, slot, past, requests, answers, on_answer)
            else:
                self._score_rows(rows, slot, past, requests, answers, on_answer)

    def _chunk(self, candidates: list[int], contexts: list[tuple[int, ...]], p: int,
               packing: dict[int, int]) -> list[int]:
        """The next contexts run together: padded tokens within the tuner's budget, cache within kv_budget."""
        chunk: list[int] = []
        suffix = packed = 0
        for c in candidates:
            suffix = max(suffix, len(contexts[c]) - 1 - p)
            packed = max(packed, packing.get(c, 0))
            n = len(chunk) + 1
            if chunk and (n * max(suffix, packed, 1) > self.tuner.budget or n * (p + suffix) > self.kv_budget):
                break
            chunk.append(c)
        return chunk

    def _score_packed(self, rows: list[_Row], slot: dict[int, int], past: RowCache,
                      requests: Sequence[tuple[Sequence[int], Sequence[int]]],
                      answers: list[tuple[float, bool] | None],
                      on_answer: Callable[[int, tuple[float, bool]], None] | None) -> None:
        """Every continuation row of a context side by side in that context's row (no cache copies)."""
        by_slot: list[list[_Row]] = [[] for _ in range(past.rows)]
        for row in rows:
            by_slot[slot[row.context]].append(row)
        began = self.forward.clock()
        logits, offsets = self.forward.packed(past, [[row.tokens for row in group] for group in by_slot])
        self.tuner.observe(logits.shape[0] * logits.shape[1], self.forward.clock() - began)
        for i, group in enumerate(by_slot):
            for row, at in zip(group, offsets[i], strict=True):
                row_logprobs = F.log_softmax(logits[i, at:at + len(row.tokens)], dim=-1, dtype=self.log_softmax_dtype)
                self._answer(row, row_logprobs, requests, answers, on_answer)

    def _answer(self, row: _Row, row_logprobs: torch.Tensor, requests: Sequence[tuple[Sequence[int], Sequence[int]]],
                answers: list[tuple[float, bool] | None],
                on_answer: Callable[[int, tuple[float, bool]], None] | None) -> None:
        greedy = row_logprobs.argmax(dim=-1)
        for r in row.requests:
            cont = torch.tensor(requests[r][1], dtype=torch.long, device=row_logprobs.device)
            picked = row_logprobs[: len(cont)].gather(1, cont[:, None]).squeeze(1)
            answer = (float(picked.sum()), bool((greedy[: len(cont)] == cont).all()))
            answers[r] = answer
            if on_answer is not None:
                on_answer(r, answer)

    @staticmethod
    def _rows(chunk: list[int], contexts: list[tuple[int, ...]], by_context: list[list[int]],
              requests: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[_Row]:
        rows: dict[tuple[int, tuple[int, ...]], _Row] = {}
        for c in chunk:
            for r in by_context[c]:
                head = tuple(requests[r][1][:-1])
                row = rows.setdefault((c, head), _Row(c, [contexts[c][-1], *head], []))
                row.requests.append(r)
        return sorted(rows.values(), key=lambda row: -len(row.tokens))

    def _score_rows(self, rows: list[_Row], slot: dict[int, int], past: RowCache,
                    requests: Sequence[tuple[Sequence[int], Sequence[int]]],
                    answers: list[tuple[float, bool] | None],
                    on_answer: Callable[[int, tuple[float, bool]], None] | None) -> None:
        device = self.forward.device
        start = 0
        while start < len(rows):
            longest = len(rows[start].tokens)
            width = max(1, min(self.tuner.budget // longest, self.kv_budget // max(past.length + longest, 1)))
            batch = rows[start:start + width]
            start += len(batch)
            index = torch.tensor([slot[row.context] for row in batch], dtype=torch.long, device=device)
            began = self.forward.clock()
            logits, _ = self.forward(past.select(index), [row.tokens for row in batch])
            assert logits is not None
            logprobs = F.log_softmax(logits, dim=-1, dtype=self.log_softmax_dtype)
            self.tuner.observe(len(batch) * longest, self.forward.clock() - began)
            for row_logprobs, row in zip(logprobs, batch, strict=True):
                self._answer(row, row_logprobs, requests, answers, on_answer)
