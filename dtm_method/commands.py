"""DTM's command-line commands, registered under `atax.commands` (pyproject.toml): `atax disperse`.

Only typer and pathlib are imported here: the CLI loads this module to list its commands, and
`atax --help` must not import torch.
"""

from __future__ import annotations

from pathlib import Path

import typer


def disperse(
    data: str = typer.Argument(..., help="Instruction data: local file, hub id or builtin:toy-instructions."),
    k: int = typer.Option(4, "--k", min=1, help="Number of clusters."),
    strategy: str = typer.Option("random", "--strategy", help="random or kmeans."),
    encode: str = typer.Option("instruction", "--encode", help="kmeans: instruction, response or both."),
    embed_model: str | None = typer.Option(None, "--embed-model", help="kmeans: sentence-transformers model."),
    seed: int = typer.Option(0, "--seed", help="Seed of the permutation / k-means."),
    out: Path = typer.Option(..., "--out", help="Assignments JSONL: {index, cluster} per sample."),
) -> None:
    """Disperse DATA into K clusters (DTM's first step) and report the cluster sizes."""
    from collections import Counter

    from dtm_method.dispersal import disperse as run_dispersal
    from dtm_method.dispersal import write_assignments
    from harness.config import DataConfig
    from harness.data import load_instruction_data
    from harness.errors import UserError

    if strategy not in ("random", "kmeans"):
        raise UserError(f"--strategy: must be random or kmeans (got {strategy!r})")
    if encode not in ("instruction", "response", "both"):
        raise UserError(f"--encode: must be instruction, response or both (got {encode!r})")
    records = load_instruction_data(DataConfig(source=data)).records
    labels = run_dispersal(records, k, strategy, seed, encode=encode, embed_model=embed_model,  # type: ignore[arg-type]
                           source=data)
    write_assignments(out, labels)
    sizes = Counter(labels)
    typer.echo(f"{len(labels)} samples -> {k} clusters of sizes {[sizes[c] for c in range(k)]}; wrote {out}")
