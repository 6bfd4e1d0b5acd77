"""A third-party method plug-in, as a separate distribution would ship it (used by the tests)."""

from typing import ClassVar

from pydantic import Field

from harness.method import MethodOptions, RunSpec


class ToySoupOptions(MethodOptions):
    k: int = Field(2, ge=1, description="Number of runs.")


class ToySoup:
    description: ClassVar[str] = "Test plug-in: k runs on all data, the first checkpoint kept."
    Options: ClassVar[type[MethodOptions]] = ToySoupOptions

    def __init__(self, options: ToySoupOptions) -> None:
        self.options = options

    def plan(self, data, ctx):
        return [RunSpec(name=f"run-{i}", seed=ctx.seed * 1000 + i) for i in range(self.options.k)]

    def combine(self, checkpoints, ctx):
        return checkpoints[0]
