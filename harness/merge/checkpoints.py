"""Merge checkpoints (LoRA adapters or dense models of one base) into one checkpoint.

What a merge writes follows its operator's record (harness/merge/operator.py): `average` of LoRA
inputs stays a LoRA (exact, by concatenation), `lora_factor_average` too (approximate, as the DTM
authors' code), `ensemble` keeps the inputs as a logit ensemble; every other operator writes a
dense model, or, with `lora_rank`, a LoRA of that rank re-factorised by truncated SVD (error in
the manifest). Incompatible inputs are refused before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.checkpoint import Checkpoint, find_complete, write_checkpoint
from harness.errors import UserError
from harness.keys import content_key
from harness.manifest import BaseModelRef
from harness.merge.adapters import Adapter, read_adapter, write_adapter
from harness.merge.operator import MergeOperator, operator
from harness.merge.operators import check_weights
from harness.modeling import resolve_model_dir


def merge_checkpoints(checkpoints: Sequence[Checkpoint], op: str, out_dir: Path, *,
                      weights: Sequence[float] | None = None, params: dict[str, Any] | None = None, seed: int = 0,
                      fishers: Sequence[dict[str, Any]] | None = None,
                      provenance: dict[str, Any] | None = None, lora_rank: int | None = None) -> Checkpoint:
    params = dict(params or {})
    record = operator(op)  # unknown names fail here, before any work
    check_merge(record, checkpoints, weights, lora_rank, fishers)
    if record.output == "ensemble":
        from harness.merge.ensemble import make_ensemble

        return make_ensemble(checkpoints, out_dir, weights, provenance)
    base = common_base(checkpoints)
    identity = {"op": op, "weights": weights, "params": params, "seed": seed,
                "inputs": [c.run_key or str(c.path) for c in checkpoints]}
    if lora_rank is not None:  # only when set: merges made before the option existed keep their keys
        identity["lora_rank"] = lora_rank
    key = content_key(identity)
    existing = find_complete(out_dir, key)
    if existing is not None:
        return existing
    adapters = [read_adapter(c.path) if c.kind == "lora" else c.path for c in checkpoints]
    lora_inputs = [a for a in adapters if isinstance(a, Adapter)]
    _check_same_modules(lora_inputs)
    manifest: dict[str, Any] = {
        "run_key": key, "base_model": base.as_dict(),
        "merge": {"op": op, "weights": weights, "params": params, "seed": seed,
                  "inputs": [{"path": str(c.path), "run_key": c.run_key} for c in checkpoints]},
        "provenance": provenance or {},
    }
    if record.output == "lora" and lora_rank is None and len(lora_inputs) == len(adapters):
        if record.lora_inputs_only:
            _check_same_shapes(lora_inputs)
        config, modules = record.lora_function()(lora_inputs, weights)
        manifest["kind"] = "lora"
        return write_checkpoint(out_dir, manifest, lambda tmp: write_adapter(tmp, config, modules))
    base_dir = resolve_model_dir(str(base.id), base.revision)
    if lora_rank is not None:
        return _write_refactored(out_dir, manifest, base_dir, lora_inputs, record, lora_rank, weights, params,
                                 seed, fishers)
    return _write_dense(out_dir, manifest, base_dir, adapters, record, weights, params, seed, fishers)


def check_merge(record: MergeOperator, checkpoints: Sequence[Checkpoint], weights: Sequence[float] | None,
                lora_rank: int | None, fishers: Sequence[Any] | None) -> None:
    """Refuse, in one line, a merge the operator cannot make of these inputs."""
    if len(checkpoints) < 1:
        raise UserError("merge: give at least one checkpoint")
    if lora_rank is not None:
        if lora_rank < 1:
            raise UserError(f"--lora-rank: must be a positive rank (got {lora_rank})")
        if not record.refactorable:
            raise UserError(f"--lora-rank: --op {record.name} is not re-factorised; use it without --lora-rank")
    if lora_rank is not None or record.lora_inputs_only:
        for checkpoint in checkpoints:
            if checkpoint.kind != "lora":
                why = ("--lora-rank re-factorises merges of LoRA checkpoints only" if lora_rank is not None
                       else f"--op {record.name} takes LoRA checkpoints only")
                fix = "drop --lora-rank to write a dense model" if lora_rank is not None else \
                    "use task_arithmetic or average for dense inputs"
                raise UserError(f"{checkpoint.path}: {why} (this one is {checkpoint.kind}); {fix}")
    if weights is not None:
        try:
            check_weights(weights, len(checkpoints), must_sum_to_one=record.weights_sum_to_one)
        except ValueError as exc:
            raise UserError(f"--weights: {exc}") from None
    if record.needs_fisher and fishers is None:
        raise UserError(f"--op {record.name}: needs each sub-model's Fisher; merge through a method or give "
                        "--fisher-data")
    common_base(checkpoints)


def _write_dense(out_dir: Path, manifest: dict[str, Any], base_dir: Path, adapters: Sequence[Adapter | Path],
                 record: MergeOperator, weights: Sequence[float] | None, params: dict[str, Any], seed: int,
                 fishers: Sequence[dict[str, Any]] | None) -> Checkpoint:
    from harness.merge.dense import merge_dense

    def payload(tmp: Path) -> None:
        manifest["merge"]["counts"] = merge_dense(base_dir, adapters, record, tmp, weights=weights, params=params,
                                                  seed=seed, fishers=fishers)

    manifest["kind"] = "dense"
    try:
        return write_checkpoint(out_dir, manifest, payload)
    except ValueError as exc:  # an operator's parameter check, e.g. density out of range
        raise UserError(f"--op {record.name}: {exc}") from None


def _write_refactored(out_dir: Path, manifest: dict[str, Any], base_dir: Path, adapters: Sequence[Adapter],
                      record: MergeOperator, lora_rank: int, weights: Sequence[float] | None, params: dict[str, Any],
                      seed: int, fishers: Sequence[dict[str, Any]] | None) -> Checkpoint:
    from harness.merge.refactor import merge_to_lora

    def payload(tmp: Path) -> None:
        try:
            config, modules, report = merge_to_lora(base_dir, adapters, record, lora_rank, weights=weights,
                                                    params=params, seed=seed, fishers=fishers)
        except ValueError as exc:  # an operator's parameter check, e.g. density out of range
            raise UserError(f"--op {record.name}: {exc}") from None
        manifest["merge"]["lora_rank"] = lora_rank
        manifest["merge"]["svd"] = report
        write_adapter(tmp, config, modules)

    manifest["kind"] = "lora"
    return write_checkpoint(out_dir, manifest, payload)


def common_base(checkpoints: Sequence[Checkpoint]) -> BaseModelRef:
    """The one base model of `checkpoints`; a one-line error when they differ."""
    first = checkpoints[0].base_model
    for checkpoint in checkpoints[1:]:
        other = checkpoint.base_model
        if (other.id, other.revision) != (first.id, first.revision):
            raise UserError(f"{checkpoint.path}: base model {other.id} differs from {checkpoints[0].path}'s "
                            f"{first.id}; merge only checkpoints of one base model")
    return first


def _check_same_modules(adapters: Sequence[Adapter]) -> None:
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
