"""The α search: candidate vectors (a grid, or a seeded share of it), their two proxy losses, the
Pareto front over them, and the selection rule that picks the checkpoints to write.

Both proxies are losses (lower is better): the mean token loss on held-out instruction records
(instruction following) and on pre-training text (knowledge; its exp is the perplexity).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

SelectionRule = Literal["pareto", "knee"]


@dataclass(frozen=True)
class Candidate:
    alphas: tuple[float, ...]
    instruction_loss: float  # held-out instruction records, nats per response token
    knowledge_loss: float  # pre-training text, nats per token

    @property
    def knowledge_perplexity(self) -> float:
        return math.exp(self.knowledge_loss)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "alphas": list(self.alphas), "knowledge_perplexity": self.knowledge_perplexity}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Candidate:
        return cls(tuple(data["alphas"]), data["instruction_loss"], data["knowledge_loss"])


def candidate_vectors(grid: Sequence[float], n_blocks: int, budget: int | None, seed: int) -> list[tuple[float, ...]]:
    """Every α vector of the grid, or, when there are more than `budget`, the uniform vectors (the
    scaled_vanilla line, so the search's front is never worse than it) plus a seeded sample of the rest,
    drawn without listing a grid that may be astronomically large; in grid order."""
    values = sorted(set(grid))
    total = len(values) ** n_blocks
    if budget is None or total <= budget:
        return list(itertools.product(values, repeat=n_blocks))
    uniform = {(v,) * n_blocks for v in values}
    wanted = max(0, budget - len(uniform))
    rng = random.Random(f"layer_averaging-search:{seed}")
    if total <= 4 * budget + len(uniform):  # a small grid: sample from the listed rest
        rest = [v for v in itertools.product(values, repeat=n_blocks) if v not in uniform]
        chosen = set(rng.sample(rest, wanted))
    else:  # a large grid: draws rarely collide, so draw until enough distinct ones
        chosen = set()
        while len(chosen) < wanted:
            vector = tuple(rng.choice(values) for _ in range(n_blocks))
            if vector not in uniform:
                chosen.add(vector)
    return sorted(uniform | chosen)


def dominates(a: Candidate, b: Candidate) -> bool:
    return (a.instruction_loss <= b.instruction_loss and a.knowledge_loss <= b.knowledge_loss
            and (a.instruction_loss < b.instruction_loss or a.knowledge_loss < b.knowledge_loss))


def pareto_front(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates no other one beats on both losses, best instruction loss first."""
    front = [c for c in candidates if not any(dominates(o, c) for o in candidates)]
    unique = {c.alphas: c for c in front}.values()
    return sorted(unique, key=lambda c: (c.instruction_loss, c.knowledge_loss, c.alphas))


def knee(front: Sequence[Candidate]) -> Candidate:
    """The front point nearest the ideal (best loss on each axis), each axis scaled to [0, 1] over the front."""
    def scaled(values: list[float]) -> list[float]:
        low, high = min(values), max(values)
        return [0.0 if high == low else (v - low) / (high - low) for v in values]

    xs = scaled([c.instruction_loss for c in front])
    ys = scaled([c.knowledge_loss for c in front])
    return min(zip(front, xs, ys, strict=True), key=lambda t: (math.hypot(t[1], t[2]), t[0].alphas))[0]


def select(front: Sequence[Candidate], rule: SelectionRule, max_points: int,
           include_endpoints: bool = False) -> list[Candidate]:
    """`pareto`: up to `max_points` front points spread evenly along it (both ends kept); `knee`: one.

    Unless `include_endpoints`, the all-0 and all-1 vectors (the base model and vanilla itself,
    rows of their own) are left out of the choice when the front has other points; they still shape it.
    """
    inner = [c for c in front if len(set(c.alphas)) > 1 or c.alphas[0] not in (0.0, 1.0)]
    pool = list(front) if include_endpoints or not inner else inner  # a front of endpoints only: they are it
    if rule == "knee":
        return [knee(pool)]
    if len(pool) <= max_points:
        return list(pool)
    if max_points == 1:
        return [knee(pool)]
    picks = sorted({round(i * (len(pool) - 1) / (max_points - 1)) for i in range(max_points)})
    return [pool[i] for i in picks]


class ProxyScorer:
    """Vanilla's adapter on the base model, loaded once; each α vector sets the LoRA scaling of every
    module (s·α_b, the same ΔW as B scaled by α_b) and measures both proxy losses."""

    def __init__(self, adapter_dir: Any, base: dict[str, Any], block_of: Any, instruction: Sequence[Any],
                 text: Sequence[Any], max_seq_len: int, pad_id: int) -> None:
        from peft import PeftModel

        from harness.modeling import load_causal_lm, pick_device

        self.device = pick_device()
        model = load_causal_lm(base["id"], base.get("revision"), "auto", self.device)
        self.model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
        self.modules = []  # (module, adapter name, its own scale, block)
        for name, module in self.model.named_modules():
            scaling = getattr(module, "scaling", None)
            if not isinstance(scaling, dict) or not hasattr(module, "lora_A"):
                continue
            weight = name.removeprefix("base_model.model.") + ".weight"
            for adapter, scale in scaling.items():
                self.modules.append((module, adapter, float(scale), block_of(weight)))
        self.instruction, self.text, self.max_seq_len, self.pad_id = list(instruction), list(text), max_seq_len, pad_id

    def set_alphas(self, alphas: Sequence[float]) -> None:
        for module, adapter, scale, block in self.modules:
            module.scaling[adapter] = scale * alphas[block]

    def score(self, alphas: Sequence[float]) -> Candidate:
        from harness.train.loss import mean_token_loss

        self.set_alphas(alphas)
        instruction = mean_token_loss(self.model, self.instruction, self.device, self.pad_id, self.max_seq_len)
        knowledge = mean_token_loss(self.model, self.text, self.device, self.pad_id, self.max_seq_len)
        return Candidate(tuple(alphas), instruction, knowledge)
