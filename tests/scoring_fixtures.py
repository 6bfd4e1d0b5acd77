"""Log-likelihood requests of every shape the engines meet, and the comparison with lm-eval's answers."""

from __future__ import annotations

import random

import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

WORDS = "the cat dog sat on a mat with some red blue green ideas sleeping quickly over under 42 7".split()


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def mc_requests(plain: HFLM, seed: int = 0) -> list[Instance]:
    """Multiple choice with a few-shot preamble (two tasks), zero-shot items, one-token choices,
    a greedy continuation, a context ending in a space and a one-token context."""
    rng = random.Random(seed)
    out: list[Instance] = []

    def add(ctx: str, cont: str) -> None:
        out.append(Instance("loglikelihood", {}, (ctx, cont), len(out)))

    for task in range(2):
        shots = "".join(f"Q: {_text(rng, 12)}\nA: {_text(rng, 3)}\n\n" for _ in range(4))
        preamble = f"Task {task}. {shots}"
        for _ in range(4):
            ctx = preamble + f"Q: {_text(rng, rng.randint(2, 10))}\nA:"
            for _ in range(rng.randint(2, 5)):
                add(ctx, " " + _text(rng, rng.randint(1, 6)))
    for _ in range(3):
        ctx = f"Question: {_text(rng, rng.randint(4, 20))}\nAnswer:"
        for letter in "ABCD":
            add(ctx, f" {letter}")
    ctx = "Q: red cat\nA:"
    ids = plain.tok_encode(ctx)
    with torch.no_grad():
        greedy = plain.model.generate(torch.tensor([ids]), max_new_tokens=3, do_sample=False)[0, len(ids):]
    add(ctx, plain.tokenizer.decode(greedy))
    add("Answer: ", "blue")
    add("x", " y z")
    return out


def assert_same(expected: list[tuple[float, bool]], got: list[tuple[float, bool]]) -> None:
    assert len(expected) == len(got)
    for (want_ll, want_greedy), (ll, greedy) in zip(expected, got, strict=True):
        assert abs(want_ll - ll) <= 1e-4, (want_ll, ll)
        assert want_greedy == greedy
