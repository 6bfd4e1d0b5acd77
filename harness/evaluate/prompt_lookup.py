"""Draft tokens for greedy decoding by looking the row's last words up in its own text (prompt lookup).

A few-shot chain-of-thought answer repeats much of its prompt (numbers and phrases of the question,
the exemplars' "The answer is"). When the last n tokens of a row (prompt + generated) occurred
before, the tokens that followed that occurrence are a guess at what comes next; the generator feeds
the guess with the row's next token and keeps the part greedy decoding confirms, so a memory-bound
decode step yields several tokens while the outputs stay greedy decoding's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class PromptLookup:
    """The row's tokens and, per n-gram size, where the latest earlier occurrence of each n-gram ended."""

    def __init__(self, tokens: Sequence[int], max_ngram: int = 3) -> None:
        self.tokens: list[int] = []
        self.max_ngram = max_ngram
        self._follows: list[dict[tuple[int, ...], int]] = [{} for _ in range(max_ngram + 1)]
        self.extend(tokens)

    def extend(self, tokens: Iterable[int]) -> None:
        for token in tokens:
            # The n-grams ending at the current last token now have a follower: index them (the row's
            # own last n-gram stays out, so a lookup finds an earlier occurrence).
            end = len(self.tokens)
            for n in range(1, min(self.max_ngram, end) + 1):
                self._follows[n][tuple(self.tokens[end - n:end])] = end
            self.tokens.append(token)

    def draft(self, count: int) -> list[int]:
        """Up to `count` tokens that followed the latest earlier occurrence of the longest matching tail."""
        if count <= 0:
            return []
        for n in range(min(self.max_ngram, len(self.tokens)), 0, -1):
            at = self._follows[n].get(tuple(self.tokens[-n:]))
            if at is not None:
                return self.tokens[at:at + count]
        return []
