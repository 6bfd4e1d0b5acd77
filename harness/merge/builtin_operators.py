"""The built-in merge operators as registered records (entry points `atax.merges` in pyproject.toml).

The exact rules are in operators.py (tensor functions), lora.py (LoRA-keeping merges) and
ensemble.py (the logit ensemble).
"""

from __future__ import annotations

from harness.merge.operator import MergeOperator

_OPS = "harness.merge.operators"

average = MergeOperator(
    "average", "Weighted average Σ αᵢδᵢ; of LoRA inputs an exact LoRA (adapters concatenated).", "lora",
    weights_sum_to_one=True, tensor=f"{_OPS}:average", lora="harness.merge.lora:exact_average")
lora_factor_average = MergeOperator(
    "lora_factor_average", "A and B averaged separately (the DTM authors' code): an approximation.", "lora",
    weights_sum_to_one=True, lora="harness.merge.lora:factor_average", lora_inputs_only=True)
task_arithmetic = MergeOperator(
    "task_arithmetic", "λ Σ αᵢδᵢ (Ilharco et al.), αᵢ = 1 by default.", "dense", weights_sum_to_one=False,
    tensor=f"{_OPS}:task_arithmetic", params=("scale",))
ties = MergeOperator(
    "ties", "TIES: trim each δᵢ to its top density, elect signs, disjoint mean.", "dense",
    weights_sum_to_one=False, tensor=f"{_OPS}:ties", params=("density", "scale"), needs_magnitude_thresholds=True)
dare = MergeOperator(
    "dare", "DARE: drop entries with probability p, rescale, task arithmetic.", "dense", weights_sum_to_one=False,
    tensor=f"{_OPS}:dare", params=("p", "scale"), uses_seed=True)
dare_ties = MergeOperator(
    "dare_ties", "DARE's random drop, then TIES' sign election and disjoint mean.", "dense",
    weights_sum_to_one=False, tensor=f"{_OPS}:dare_ties", params=("p", "scale"), uses_seed=True)
fisher = MergeOperator(
    "fisher", "Fisher-weighted average Σ αᵢFᵢθᵢ / Σ αᵢFᵢ (Matena & Raffel).", "dense", weights_sum_to_one=True,
    tensor=f"{_OPS}:fisher", needs_fisher=True)
parameter_selection = MergeOperator(
    "parameter_selection", "Each entry from one sub-model drawn ∝ αᵢ (Ju et al. 2024).", "dense",
    weights_sum_to_one=True, tensor=f"{_OPS}:parameter_selection", params=("resample",), uses_seed=True)
ensemble = MergeOperator(
    "ensemble", "Keep the LoRA sub-models; average their next-token probabilities at evaluation (hf backend).",
    "ensemble", weights_sum_to_one=True, lora_inputs_only=True)
