"""`atax init`'s example lists every method, and each one trains offline from it."""

from __future__ import annotations

import json

import pytest
from conftest import run_atax

METHODS = ["vanilla", "l2", "ewc", "replay", "deita", "uniform_soup", "loramoe", "dtm", "data_order_merge",
           "scaled_vanilla", "layer_averaging"]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    path = tmp_path_factory.mktemp("example") / "exp.yaml"
    assert run_atax("init", "--out", str(path)).returncode == 0
    return path


def test_every_registered_method_is_in_the_example(example):
    names = {row["name"] for row in json.loads(run_atax("methods", "--json").stdout)}
    assert set(METHODS) <= names
    text = example.read_text()
    for name in METHODS:
        assert f"name: {name}" in text or f"  - {name}\n" in text


@pytest.mark.parametrize("method", METHODS)
def test_each_method_trains_offline_from_the_example(example, method):
    result = run_atax("train", "--config", str(example), "--method", method, "--quiet", timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{method}")
