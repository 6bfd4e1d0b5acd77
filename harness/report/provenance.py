"""Where each table row comes from, read from the checkpoints' manifests in the store: base model,
instruction data, method and options, seeds, code version, eval backend.

Manifests differ by how a checkpoint was made: a trained run carries `training`, `data`,
`code_version` and `provenance`; a merge names its `merge.inputs`; a scaled control its
`scaled_from`. Facts a derived checkpoint lacks are read from the run(s) it was made from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from harness.stats.joins import RunRef
from harness.store import ResultsStore

_MAX_DEPTH = 4  # merge of scaled of run: a chain longer than this is a cycle or a bug


def manifest(store: ResultsStore, key: str | None) -> dict[str, Any]:
    record = store.checkpoint(key) if key else None
    return dict(record.provenance) if record is not None else {}


def parents(m: dict[str, Any]) -> list[str]:
    """Run keys of the checkpoints this one was made from (merge inputs, or the run a control scales)."""
    inputs = [i.get("run_key") for i in (m.get("merge") or {}).get("inputs", []) if isinstance(i, dict)]
    scaled = (m.get("scaled_from") or {}).get("run_key")
    return [k for k in [*inputs, scaled] if k]


def origins(store: ResultsStore, key: str, depth: int = 0) -> list[dict[str, Any]]:
    """The trained runs' manifests behind checkpoint `key` (itself, if it is one)."""
    m = manifest(store, key)
    if "training" in m or depth >= _MAX_DEPTH or not parents(m):
        return [m] if m else []
    found = []
    for parent in parents(m):
        found += origins(store, parent, depth + 1)
    return found or [m]


def data_size(store: ResultsStore, key: str) -> int | None:
    """Instruction examples behind checkpoint `key`: its run's, or the sum over a merge's sub-models."""
    sizes = [_instruction_records(o.get("data") or {}) for o in origins(store, key)]
    if not sizes or any(not isinstance(s, int) for s in sizes):
        return None
    m = manifest(store, key)
    return sizes[0] if (m.get("scaled_from") and not m.get("merge")) else sum(sizes)


def _instruction_records(data: dict[str, Any]) -> Any:
    # manifests before ENGINE_VERSION 2 have only n_records (instruction and text records together)
    return data.get("n_instruction_records", data.get("n_records"))


def method_options(store: ResultsStore, key: str) -> dict[str, Any]:
    """The method options the checkpoint was made with (a merge records its own, a run its method's)."""
    m = manifest(store, key)
    own = (m.get("provenance") or {}).get("options")
    if isinstance(own, dict):
        return own
    for origin in origins(store, key):
        options = (origin.get("provenance") or {}).get("options")
        if isinstance(options, dict):
            return options
    return {}


def _first(values: Sequence[Any]) -> Any:
    return next((v for v in values if v not in (None, "", {}, [])), None)


def _base_name(base: dict[str, Any], runs: Sequence[RunRef]) -> str:
    if base.get("id"):
        return str(base["id"]) + (f"@{base['revision']}" if base.get("revision") else "")
    # An eval of a plain model (no atax checkpoint) records what it loaded in the run's meta.
    target = (runs[0].run_meta.get("target") or {}) if runs else {}
    return str(target.get("model") or target.get("ref") or "–")


def row_provenance(store: ResultsStore, runs: Sequence[RunRef]) -> dict[str, str]:
    """Display strings for one table row, from all its eval runs (every seed, every benchmark)."""
    keys = sorted({r.checkpoint for r in runs})
    manifests = [manifest(store, k) for k in keys]
    origin_list = [o for k in keys for o in origins(store, k)]
    base = _first([m.get("base_model") for m in manifests] + [o.get("base_model") for o in origin_list]) or {}
    prov = [o.get("provenance") or {} for o in origin_list] + [m.get("provenance") or {} for m in manifests]
    data_source = _first([p.get("data") for p in prov])
    sizes = sorted({s for k in keys if (s := data_size(store, k)) is not None})
    code = _first([o.get("code_version") for o in origin_list]) or {}
    merge = _first([m.get("merge") for m in manifests]) or {}
    options = _first([method_options(store, k) for k in keys]) or {}
    meta = runs[0].run_meta if runs else {}
    seeds = sorted({r.seed for r in runs if r.seed is not None})
    return {
        "base model": _base_name(base, runs),
        "data": (str(data_source) if data_source else "–") + (f" ({', '.join(map(str, sizes))} examples)"
                                                              if sizes else ""),
        "method": str(_first([p.get("method_name") for p in prov] + [p.get("method") for p in prov]) or "–")
        + (f", merge {merge.get('op')}" if merge.get("op") else "")
        + (f", {_first([m.get('variant') for m in manifests])}" if _first([m.get("variant") for m in manifests])
           else ""),
        "options": json.dumps(options, sort_keys=True) if options else "–",
        "seeds": ", ".join(map(str, seeds)) or "–",
        "code version": ", ".join(f"{k} {v}" for k, v in sorted(code.items())) or "–",
        "eval": ", ".join(f"{k} {meta[k]}" for k in ("backend", "lm_eval_version") if meta.get(k)) or "–",
        "checkpoints": ", ".join(keys),
    }
