"""Merge operators on plain tensors: identities, golden values, and their documented rules."""

from __future__ import annotations

import pytest
import torch

from harness import merge

OPS = ["average", "task_arithmetic", "ties", "dare", "dare_ties", "fisher", "parameter_selection"]


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def call(name, tensors, base, weights=None, **params):
    if name == "fisher":
        params.setdefault("fishers", [torch.ones_like(t) for t in tensors])
    if name in ("ties", "dare_ties"):
        params.setdefault("density" if name == "ties" else "p", 1.0 if name == "ties" else 0.0)
    if name == "dare":
        params.setdefault("p", 0.0)
    return merge.get(name)(tensors, base=base, weights=weights, **params)


@pytest.mark.parametrize("name", OPS)
def test_one_model_with_weight_one_returns_it(name):
    base, theta = rand(6, 5, seed=1), rand(6, 5, seed=2)
    torch.testing.assert_close(call(name, [theta], base, [1.0]), theta)


@pytest.mark.parametrize("name", OPS)
def test_identical_models_return_the_model(name):
    base, theta = rand(4, 3, seed=1), rand(4, 3, seed=2)
    weights = [0.25] * 4
    torch.testing.assert_close(call(name, [theta] * 4, base, weights), theta)


@pytest.mark.parametrize("name", OPS)
def test_all_base_returns_base(name):
    base = rand(3, 3, seed=4)
    torch.testing.assert_close(call(name, [base.clone(), base.clone()], base), base)


def test_average_is_the_weighted_mean_of_deltas():
    base, a, b = rand(5, seed=1), rand(5, seed=2), rand(5, seed=3)
    torch.testing.assert_close(merge.get("average")([a, b], base=base, weights=[0.25, 0.75]),
                               base + 0.25 * (a - base) + 0.75 * (b - base))


def test_task_arithmetic_scales_the_sum():
    base, a, b = rand(5, seed=1), rand(5, seed=2), rand(5, seed=3)
    torch.testing.assert_close(merge.get("task_arithmetic")([a, b], base=base, scale=0.5),
                               base + 0.5 * ((a - base) + (b - base)))


def test_dare_with_p_zero_is_task_arithmetic():
    base, a, b = rand(7, 3, seed=1), rand(7, 3, seed=2), rand(7, 3, seed=3)
    torch.testing.assert_close(merge.get("dare")([a, b], base=base, p=0.0, scale=0.7),
                               merge.get("task_arithmetic")([a, b], base=base, scale=0.7))


def test_dare_is_unbiased_and_drops_about_p():
    delta = torch.ones(200_000)
    out = merge.get("dare")([delta], p=0.3, seed=5)
    assert abs(float((out == 0).float().mean()) - 0.3) < 0.01
    assert abs(float(out.mean()) - 1.0) < 0.01  # kept entries are rescaled by 1/(1-p)
    assert torch.equal(out, merge.get("dare")([delta], p=0.3, seed=5))  # seeded
    assert not torch.equal(out, merge.get("dare")([delta], p=0.3, seed=6))


def test_ties_golden():
    # δ1 = [ 3, -1, 0.5,  2], δ2 = [-1, -2, 0.4, -3], density 0.5 keeps the two largest |δ| of each:
    # δ̂1 = [3, 0, 0, 2], δ̂2 = [0, -2, 0, -3]; weighted sign sum with weights (1, 1): [3, -2, 0, -1]
    # elected [+, -, 0, -]; disjoint mean: [3, -2, 0, -3].
    d1, d2 = torch.tensor([3.0, -1.0, 0.5, 2.0]), torch.tensor([-1.0, -2.0, 0.4, -3.0])
    torch.testing.assert_close(merge.get("ties")([d1, d2], density=0.5), torch.tensor([3.0, -2.0, 0.0, -3.0]))
    # Weights move the election: with (3, 1) the last entry's sum is 3*2 - 3 = +3, so δ̂1 wins there.
    torch.testing.assert_close(merge.get("ties")([d1, d2], weights=[3.0, 1.0], density=0.5),
                               torch.tensor([3.0, -2.0, 0.0, 2.0]))


def test_fisher_weights_towards_the_confident_model():
    a, b = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0])
    out = merge.get("fisher")([a, b], fishers=[torch.tensor([3.0, 1.0]), torch.tensor([1.0, 3.0])])
    torch.testing.assert_close(out, torch.tensor([0.25, 0.75]))
    equal = merge.get("fisher")([a, b], weights=[0.3, 0.7], fishers=[torch.ones(2) * 2, torch.ones(2) * 2])
    torch.testing.assert_close(equal, merge.get("average")([a, b], weights=[0.3, 0.7]))


def test_parameter_selection_takes_each_entry_from_one_model():
    base = torch.zeros(10_000)
    a, b = torch.full((10_000,), 1.0), torch.full((10_000,), 2.0)
    out = merge.get("parameter_selection")([a, b], base=base, weights=[0.25, 0.75], seed=1)
    assert set(out.unique().tolist()) == {1.0, 2.0}
    assert abs(float((out == 2.0).float().mean()) - 0.75) < 0.02


def test_parameter_selection_resampling_never_keeps_a_base_value_some_model_changed():
    base = torch.zeros(5000)
    a = torch.where(torch.arange(5000) % 2 == 0, torch.tensor(1.0), torch.tensor(0.0))  # a keeps base on odd
    b = torch.where(torch.arange(5000) % 3 == 0, torch.tensor(2.0), torch.tensor(0.0))  # b keeps base off 3k
    out = merge.get("parameter_selection")([a, b], base=base, seed=3, resample=True)
    changed_somewhere = (a != 0) | (b != 0)
    assert bool((out[changed_somewhere] != 0).all())
    assert bool((out[~changed_somewhere] == 0).all())
    plain = merge.get("parameter_selection")([a, b], base=base, seed=3, resample=False)
    assert bool((plain[changed_somewhere] == 0).any())  # without resampling base values do survive


@pytest.mark.parametrize("weights,message", [
    ([0.5], "weights: 1 given for 2 models"),
    ([0.5, -0.5], "weights: must be >= 0"),
    ([0.2, 0.2], "weights: must sum to 1"),
])
def test_bad_weights(weights, message):
    with pytest.raises(ValueError, match=message):
        merge.get("average")([torch.zeros(2), torch.ones(2)], weights=weights)


def test_ties_density_out_of_range():
    with pytest.raises(ValueError, match=r"density: must be in \(0, 1\]"):
        merge.get("ties")([torch.ones(2)], density=1.5)
