"""Merge checkpoints (LoRA adapters or dense models of one base) into one checkpoint.

`average` of LoRA inputs stays a LoRA (exact, by concatenation); `lora_factor_average` too
(approximate, as the DTM authors' code); every other operator writes a dense model, or, with
`lora_rank`, a LoRA of that rank re-factorised by truncated SVD (error in the manifest).
Incompatible inputs are refused before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import registry
from harness.checkpoint import Checkpoint, find_complete, write_checkpoint
from harness.errors import UserError
from harness.keys import content_key
from harness.merge.adapters import Adapter, read_adapter, write_adapter
from harness.merge.dense import merge_dense
from harness.merge.lora import exact_average, factor_average
from harness.merge.operators import check_weights
from harness.modeling import resolve_model_dir

# Not a tensor operator: the sub-models are kept and their probabilities averaged at evaluation.
ENSEMBLE = "ensemble"
LORA_OUTPUT_OPS = {"average": exact_average, "lora_factor_average": factor_average}


def merge_checkpoints(checkpoints: Sequence[Checkpoint], op: str, out_dir: Path, *,
                      weights: Sequence[float] | None = None, params: dict[str, Any] | None = None, seed: int = 0,
                      fishers: Sequence[dict[str, Any]] | None = None,
                      provenance: dict[str, Any] | None = None, lora_rank: int | None = None) -> Checkpoint:
    params = dict(params or {})
    if lora_rank is not None:
        _check_refactorable(checkpoints, op, lora_rank)
    if op == ENSEMBLE:
        from harness.merge.ensemble import make_ensemble

        return make_ensemble(checkpoints, out_dir, weights, provenance)
    operator = registry.merges.get(op)  # unknown names fail here, before any work
    base = _common_base(checkpoints)
    if weights is not None:
        try:
            check_weights(weights, len(checkpoints), must_sum_to_one=op in ("average", "lora_factor_average",
                                                                             "fisher", "parameter_selection"))
        except ValueError as exc:
            raise UserError(f"--weights: {exc}") from None
    identity = {"op": op, "weights": weights, "params": params, "seed": seed,
                "inputs": [c.manifest.get("run_key") or str(c.path) for c in checkpoints]}
    if lora_rank is not None:  # only when set: merges made before the option existed keep their keys
        identity["lora_rank"] = lora_rank
    key = content_key(identity)
    existing = find_complete(out_dir, key)
    if existing is not None:
        return existing
    all_lora = all(c.kind == "lora" for c in checkpoints)
    adapters = [read_adapter(c.path) if c.kind == "lora" else c.path for c in checkpoints]
    lora_inputs = [a for a in adapters if isinstance(a, Adapter)]
    _check_same_modules(lora_inputs, checkpoints)
    manifest: dict[str, Any] = {
        "run_key": key, "base_model": base,
        "merge": {"op": op, "weights": weights, "params": params, "seed": seed,
                  "inputs": [{"path": str(c.path), "run_key": c.manifest.get("run_key")} for c in checkpoints]},
        "provenance": provenance or {},
    }
    if op in LORA_OUTPUT_OPS and lora_rank is None:
        if not all_lora:
            raise UserError(f"--op {op}: every input must be a LoRA checkpoint to stay a LoRA; "
                            "use task_arithmetic for dense inputs")
        if op == "lora_factor_average":
            _check_same_shapes(lora_inputs)
        config, modules = LORA_OUTPUT_OPS[op](lora_inputs, weights)
        manifest["kind"] = "lora"
        return write_checkpoint(out_dir, manifest, lambda tmp: write_adapter(tmp, config, modules))
    if op == "fisher" and fishers is None:
        raise UserError("--op fisher: needs each sub-model's Fisher; merge through a method or give --fisher-data")
    base_dir = resolve_model_dir(base["id"], base.get("revision"))
    if lora_rank is not None:
        return _write_refactored(out_dir, manifest, base_dir, lora_inputs, operator, lora_rank, weights, params,
                                 seed, fishers)

    def payload(tmp: Path) -> None:
        manifest["merge"]["counts"] = merge_dense(base_dir, adapters, operator, tmp, weights=weights, params=params,
                                                  seed=seed, fishers=fishers)

    manifest["kind"] = "dense"
    try:
        return write_checkpoint(out_dir, manifest, payload)
    except ValueError as exc:  # an operator's parameter check, e.g. density out of range
        raise UserError(f"--op {op}: {exc}") from None


def _check_refactorable(checkpoints: Sequence[Checkpoint], op: str, lora_rank: int) -> None:
    if lora_rank < 1:
        raise UserError(f"--lora-rank: must be a positive rank (got {lora_rank})")
    if op in (ENSEMBLE, "lora_factor_average"):
        raise UserError(f"--lora-rank: --op {op} is not re-factorised; use it without --lora-rank")
    for checkpoint in checkpoints:
        if checkpoint.kind != "lora":
            raise UserError(f"{checkpoint.path}: --lora-rank re-factorises merges of LoRA checkpoints only "
                            f"(this one is {checkpoint.kind}); drop --lora-rank to write a dense model")


def _write_refactored(out_dir: Path, manifest: dict[str, Any], base_dir: Path, adapters: Sequence[Adapter],
                      operator: Any, lora_rank: int, weights: Sequence[float] | None, params: dict[str, Any],
                      seed: int, fishers: Sequence[dict[str, Any]] | None) -> Checkpoint:
    from harness.merge.refactor import merge_to_lora

    def payload(tmp: Path) -> None:
        try:
            config, modules, report = merge_to_lora(base_dir, adapters, operator, lora_rank, weights=weights,
                                                    params=params, seed=seed, fishers=fishers)
        except ValueError as exc:  # an operator's parameter check, e.g. density out of range
            raise UserError(f"--op {manifest['merge']['op']}: {exc}") from None
        manifest["merge"]["lora_rank"] = lora_rank
        manifest["merge"]["svd"] = report
        write_adapter(tmp, config, modules)

    manifest["kind"] = "lora"
    return write_checkpoint(out_dir, manifest, payload)


def _common_base(checkpoints: Sequence[Checkpoint]) -> dict[str, Any]:
    if len(checkpoints) < 1:
        raise UserError("merge: give at least one checkpoint")
    bases = [c.manifest.get("base_model") or {} for c in checkpoints]
    for checkpoint, other in zip(checkpoints[1:], bases[1:], strict=True):
        if (other.get("id"), other.get("revision")) != (bases[0].get("id"), bases[0].get("revision")):
            raise UserError(f"{checkpoint.path}: base model {other.get('id')} differs from {checkpoints[0].path}'s "
                            f"{bases[0].get('id')}; merge only checkpoints of one base model")
    return bases[0]


def _check_same_modules(adapters: Sequence[Adapter], checkpoints: Sequence[Checkpoint]) -> None:
    for adapter in adapters[1:]:
        if set(adapter.modules) != set(adapters[0].modules):
            raise UserError(f"{adapter.path}: adapts other modules ({', '.join(adapter.target_modules)}) than "
                            f"{adapters[0].path} ({', '.join(adapters[0].target_modules)}); merge adapters of "
                            "the same target modules")


def _check_same_shapes(adapters: Sequence[Adapter]) -> None:
    first = adapters[0]
    for adapter in adapters[1:]:
        same = (adapter.rank, adapter.config.get("lora_alpha"), bool(adapter.config.get("use_rslora"))) == \
               (first.rank, first.config.get("lora_alpha"), bool(first.config.get("use_rslora")))
        if not same:
            raise UserError(f"{adapter.path}: rank {adapter.rank} / alpha {float(adapter.config.get('lora_alpha')):g} "
                            f"differ from {first.path}'s {first.rank} / {float(first.config.get('lora_alpha')):g}; "
                            "lora_factor_average needs equal ranks (use average, which is exact for any ranks)")
