"""The validation records layer_averaging searches on when the experiment holds none out.

The split is a data transform of the vanilla run it plans: the run trains on the records minus a
seeded sample, and combine, which receives the run's records before the transform, draws the same
sample again. So the run that is averaged never saw the records its α are chosen on.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

from pydantic import Field

from harness.errors import UserError
from harness.method import MethodOptions
from harness.train.hooks import TrainContext

T = TypeVar("T")
MAX_HELD_FRACTION = 0.2  # never hold out more than this share of the instruction data


class HoldOutOptions(MethodOptions):
    n: int = Field(ge=1, description="Records to hold out (at most a fifth of the data).")
    seed: int = Field(description="Seed of the sample (the method's repetition seed).")


def held_out_count(n_records: int, wanted: int) -> int:
    return max(1, min(wanted, int(MAX_HELD_FRACTION * n_records)))


def split_held_out(records: Sequence[T], wanted: int, seed: int) -> tuple[list[T], list[T]]:
    """(training records, held-out records): a seeded sample of `held_out_count` records, both in input order."""
    if len(records) < 2:
        raise UserError(f"layer_averaging: cannot hold out validation records from {len(records)} training "
                        "record(s); give more data or a declared validation source")
    order = list(range(len(records)))
    random.Random(f"layer_averaging-validation:{seed}").shuffle(order)
    held = set(order[: held_out_count(len(records), wanted)])
    return ([r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held])


class HoldOutValidation:
    """Data transform `layer_averaging_holdout`: drop the held-out sample from the run's records."""

    Options: ClassVar[type[MethodOptions]] = HoldOutOptions

    def __init__(self, options: HoldOutOptions, ctx: TrainContext) -> None:
        self.options = options

    def apply(self, records: list[Any], ctx: TrainContext) -> list[Any]:
        return split_held_out(records, self.options.n, self.options.seed)[0]
