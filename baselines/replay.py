"""Replay: instruction data mixed with pre-training text (default 1:1 by sample); the text
samples carry an LM loss on every token."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field

from baselines.ewc import DEFAULT_CORPUS
from harness.checkpoint import Checkpoint
from harness.data.records import TrainRecord
from harness.method import CombineContext, MethodOptions, PlanContext, PluginRef, RunSpec, only_run
from harness.train.hooks import TrainContext


class ReplayOptions(MethodOptions):
    corpus: str = Field(DEFAULT_CORPUS, description="Pre-training text: hub id, local file or builtin:toy-corpus.")
    ratio: float = Field(1.0, gt=0, le=100, description="Text samples per instruction sample (1.0 = 1:1).")


class ReplayMix:
    """Data transform `replay_mix`: append ratio·n seeded corpus documents to the n instruction records."""

    Options: ClassVar[type[MethodOptions]] = ReplayOptions

    def __init__(self, options: ReplayOptions, ctx: TrainContext) -> None:
        self.options = options

    def apply(self, records: list[TrainRecord], ctx: TrainContext) -> list[TrainRecord]:
        from harness.data.corpus import load_corpus

        wanted = max(1, round(self.options.ratio * len(records)))
        docs: list[TrainRecord] = list(load_corpus(self.options.corpus, n_docs=wanted, seed=ctx.run.seed))
        # A corpus smaller than needed is cycled (in a seeded order) rather than silently short.
        rng = random.Random(ctx.run.seed)
        while len(docs) < wanted:
            docs.extend(rng.sample(docs[: len(docs)], min(len(docs), wanted - len(docs))))
        return [*records, *docs[:wanted]]


class Replay:
    version: ClassVar[str] = "1"  # bump when its behaviour changes: part of the keys of its jobs
    light_steps: ClassVar[frozenset[str]] = frozenset({"plan", "combine"})  # no model loaded: run by the scheduler
    description: ClassVar[str] = "SFT on instruction data mixed 1:1 (configurable) with pre-training text."
    Options: ClassVar[type[MethodOptions]] = ReplayOptions

    def __init__(self, options: ReplayOptions) -> None:
        self.options = options

    def plan(self, data: Sequence[Any], ctx: PlanContext) -> list[RunSpec]:
        return [RunSpec(name="main", seed=ctx.seed,
                        data_transform=PluginRef("replay_mix", self.options.model_dump(mode="json")))]

    def combine(self, checkpoints: Sequence[Checkpoint], ctx: CombineContext) -> Checkpoint:
        return only_run(checkpoints, "replay")
