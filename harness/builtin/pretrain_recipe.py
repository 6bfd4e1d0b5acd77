"""What decides the weights of `builtin:tiny-llama-pretrained`: the recipe is part of its cache name, so a
changed recipe builds a new model instead of reusing one trained otherwise. Pure data (no torch), read by
the resolver when `atax --help` runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PretrainRecipe:
    steps: int = 250
    batch_size: int = 16
    seq_len: int = 128
    lr: float = 3e-3
    warmup_steps: int = 20  # linear warm-up, then linear decay to 0 at `steps`
    weight_decay: float = 0.0
    seed: int = 0  # the starting weights (builtin:tiny-llama's seed), the corpus's orders and the batch order
    rounds: int = 4  # passes of the fact generator over the facts (each with fresh sentence orders)

    def key(self) -> str:
        return "-".join(f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}" for k, v in asdict(self).items())


RECIPE = PretrainRecipe()
