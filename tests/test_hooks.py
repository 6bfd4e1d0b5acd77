"""Methods change training only through hooks: each hook kind is registered, built with its
options, and observably changes the run."""

from __future__ import annotations

from typing import ClassVar

import pytest
from model_fixtures import job
from pydantic import Field
from safetensors.torch import load_file

from harness import registry
from harness.data import InstructionRecord, TextRecord
from harness.method import MethodOptions, PluginRef
from harness.train.engine import train


class DeltaL2:
    class Options(MethodOptions):
        weight: float = Field(0.1, ge=0)

    calls: ClassVar[list[float]] = []

    def __init__(self, options, ctx):
        self.weight = options.weight

    def penalty(self, model, step):
        value = self.weight * sum((p ** 2).sum() for n, p in model.named_parameters() if "lora_B" in n)
        DeltaL2.calls.append(float(value))
        return value


class KeepFirstTen:
    def __init__(self, options, ctx):
        pass

    def apply(self, records, ctx):
        return records[:10] + [TextRecord("plain text with a loss on every token")]


class CountingAux:
    calls: ClassVar[int] = 0

    def __init__(self, options, ctx):
        pass

    def loss(self, model, step):
        CountingAux.calls += 1
        return None


@pytest.fixture
def hooks():
    registry.regularizers.register("test_delta_l2", DeltaL2)
    registry.data_transforms.register("test_keep_ten", KeepFirstTen)
    registry.auxiliary_losses.register("test_counting", CountingAux)
    yield
    registry.regularizers.unregister("test_delta_l2")
    registry.data_transforms.unregister("test_keep_ten")
    registry.auxiliary_losses.unregister("test_counting")


def b_norm(checkpoint) -> float:
    weights = load_file(str(checkpoint.path / "adapter_model.safetensors"))
    return float(sum((v ** 2).sum() for k, v in weights.items() if "lora_B" in k))


def test_regularizer_penalty_shrinks_the_update(tmp_path, hooks):
    from dataclasses import replace

    plain = train(job(tmp_path, "plain", max_steps=8))
    strong = job(tmp_path, "strong", max_steps=8)
    strong.run = replace(strong.run, regularizer=PluginRef("test_delta_l2", {"weight": 100.0}))
    DeltaL2.calls.clear()
    regularized = train(strong)
    assert DeltaL2.calls[0] == 0.0 and DeltaL2.calls[-1] > 0  # B starts at zero
    assert b_norm(regularized) < 0.5 * b_norm(plain)
    assert regularized.manifest["run"]["regularizer"] == {"name": "test_delta_l2", "options": {"weight": 100.0}}


def test_hook_options_are_validated(tmp_path, hooks):
    from dataclasses import replace

    bad = job(tmp_path, "bad", max_steps=1)
    bad.run = replace(bad.run, regularizer=PluginRef("test_delta_l2", {"weight": -1}))
    with pytest.raises(Exception, match="greater than or equal to 0"):
        train(bad)


def test_data_transform_and_auxiliary_loss_run(tmp_path, hooks):
    from dataclasses import replace

    spec = job(tmp_path, "transformed", max_steps=3, batch_size=4, micro_batch_size=2, batching="padded")
    spec.run = replace(spec.run, data_transform=PluginRef("test_keep_ten"),
                       auxiliary_loss=PluginRef("test_counting"))
    CountingAux.calls = 0
    checkpoint = train(spec)
    assert checkpoint.manifest["data"]["n_records"] == 11
    assert CountingAux.calls == 3 * 2  # once per micro-batch
    assert isinstance(spec.records[0], InstructionRecord)
