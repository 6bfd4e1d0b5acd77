"""`atax merge`: merge checkpoints of one base model with a registered operator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from harness.errors import UserError


def _floats(text: str | None, option: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{option}: give comma-separated numbers, e.g. 0.5,0.5 (got {text!r})") from None


def merge(
    checkpoints: list[Path] = typer.Argument(..., help="Checkpoint directories (LoRA adapters or dense, one base)."),
    op: str = typer.Option("average", "--op", help="A registered operator: average "
                                                    "(exact, stays LoRA), lora_factor_average, task_arithmetic, "
                                                    "ties, dare, dare_ties, fisher, parameter_selection, or "
                                                    "ensemble (logit ensemble, evaluated by the hf backend)."),
    weights: str | None = typer.Option(None, "--weights", help="Comma-separated weight per checkpoint."),
    density: float | None = typer.Option(None, "--density", help="ties: fraction of each task vector kept."),
    p: float | None = typer.Option(None, "--p", help="dare: drop probability."),
    scale: float | None = typer.Option(None, "--scale", help="task_arithmetic/ties/dare: lambda."),
    resample: bool = typer.Option(True, "--resample/--no-resample", help="parameter_selection: redraw base entries."),
    seed: int = typer.Option(0, "--seed", help="Seed of random operators."),
    fisher_data: str | None = typer.Option(None, "--fisher-data",
                                           help="fisher: comma-separated training data file per checkpoint."),
    lora_rank: int | None = typer.Option(None, "--lora-rank",
                                         help="LoRA inputs: re-factorise the merged deltas into one LoRA of this "
                                              "rank (truncated SVD, error recorded) instead of a dense model."),
    out: Path = typer.Option(..., "--out", help="Output checkpoint directory."),
) -> None:
    """Merge CHECKPOINTS into one; LoRA stays LoRA for average (or any operator with --lora-rank), other
    operators write a dense model."""
    from harness.checkpoint import Checkpoint
    from harness.merge.checkpoints import check_merge, merge_checkpoints
    from harness.merge.operator import operator

    try:
        record = operator(op)
    except UserError as exc:
        raise UserError(f"--op: {exc}") from None
    loaded = [Checkpoint.load(path) for path in checkpoints]
    given = {"density": density, "p": p, "scale": scale, "resample": resample}
    params: dict[str, Any] = {name: given[name] for name in record.params if given.get(name) is not None}
    unused = [f"--{name}" for name in ("density", "p", "scale") if given[name] is not None and name not in record.params]
    if unused:
        raise UserError(f"{', '.join(unused)}: not a parameter of --op {op} (it takes "
                        f"{', '.join('--' + n for n in record.params) or 'none'}); drop it")
    merge_weights = _floats(weights, "--weights")
    # Refuse a merge that cannot be made before the Fishers are computed (the Fishers come next).
    check_merge(record, loaded, merge_weights, lora_rank, fishers=[] if record.needs_fisher else None)
    fishers = _fishers(loaded, fisher_data) if record.needs_fisher else None
    merged = merge_checkpoints(loaded, op, out, weights=merge_weights, params=params, seed=seed,
                               fishers=fishers, provenance={"command": "atax merge"}, lora_rank=lora_rank)
    typer.echo(f"{merged.kind} checkpoint: {merged.path}")


def _fishers(checkpoints: list[Any], fisher_data: str | None) -> list[Any]:
    from harness.config import DataConfig
    from harness.data import load_instruction_data
    from harness.merge.fisher import lora_fisher

    files = [f for f in (fisher_data or "").split(",") if f.strip()]
    if len(files) != len(checkpoints):
        raise UserError(f"--fisher-data: give one training-data file per checkpoint ({len(checkpoints)}); "
                        f"got {len(files)}")
    return [lora_fisher(c.require_base_id(), c.base_model.revision, c.path,
                        load_instruction_data(DataConfig(source=f)).records)
            for c, f in zip(checkpoints, files, strict=True)]
