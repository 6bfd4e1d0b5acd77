"""Where each table row comes from, read from the checkpoints' manifests in the store (typed by
`harness.manifest`): base model, instruction data, method and options, seeds, code version, eval
backend and, for code benchmarks, the sandbox level.

A row's method, merge and options come from the row's own checkpoint: sub-runs can be shared by
several methods (a run is keyed by its content), so a sub-run's provenance names whichever method
trained it first. Facts a derived checkpoint lacks (data, code version) are read from the run(s) it
was made from, and its data size counts each distinct training set once, as the method saw it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.errors import UserError
from harness.manifest import Manifest, parse_manifest
from harness.stats.joins import RunRef
from harness.store import ResultsStore

_MAX_DEPTH = 4  # merge of scaled of run: a chain longer than this is a cycle or a bug
_LONG_TOKEN = 40  # characters: longer path-like tokens get break opportunities after "/"
MISSING = "–"


def stored_record(store: ResultsStore, key: str | None) -> dict[str, Any]:
    """The raw manifest (or a plain model's facts) the store keeps for checkpoint `key`."""
    record = store.checkpoint(key) if key else None
    return dict(record.provenance) if record is not None else {}


def stored_manifest(store: ResultsStore, key: str | None) -> Manifest | None:
    """The typed manifest of checkpoint `key`; None when the store has none (or a damaged one)."""
    raw = stored_record(store, key)
    if not raw:
        return None
    try:
        return parse_manifest(raw, f"{store.path}: checkpoint {key}")
    except UserError:  # a report shows what it can; the checkpoint itself fails loudly where it is opened
        return None


def origins(store: ResultsStore, key: str, depth: int = 0) -> list[Manifest]:
    """The trained runs' manifests behind checkpoint `key` (itself, if it is one)."""
    own = stored_manifest(store, key)
    if own is None:
        return []
    if own.training is not None or depth >= _MAX_DEPTH or not own.parents:
        return [own]
    found = [o for parent in own.parents for o in origins(store, parent, depth + 1)]
    return found or [own]


def data_size(store: ResultsStore, key: str) -> int | None:
    """Instruction examples behind checkpoint `key`, as its method saw them: each distinct training set
    once (DTM's K disjoint clusters add up; K runs on the same data, in other orders or settings, do not)."""
    by_data: dict[str, int] = {}
    for index, origin in enumerate(origins(store, key)):
        size = origin.training.data.instruction_examples if origin.training is not None else None
        if size is None:
            return None
        by_data[origin.training.data.fingerprint or f"#{index}"] = size  # type: ignore[union-attr]
    return sum(by_data.values()) if by_data else None


def method_options(store: ResultsStore, key: str) -> Mapping[str, Any]:
    """The method options the checkpoint was made with (its own, else those of the run it was made from)."""
    own = stored_manifest(store, key)
    if own is not None and own.provenance.options is not None:
        return own.provenance.options
    for origin in origins(store, key):
        if origin.provenance.options is not None:
            return origin.provenance.options
    return {}


def registered_method(store: ResultsStore, key: str) -> str | None:
    """The registered method that made checkpoint `key`, from its own manifest."""
    own = stored_manifest(store, key)
    return own.provenance.registered_method if own is not None else None


def _first(values: Sequence[Any]) -> Any:
    return next((v for v in values if v not in (None, "", {}, [])), None)


def format_options(options: Mapping[str, Any], prefix: str = "") -> str:
    """`k=4; dispersal=random; merge.name=average`: nested options flattened, empty ones left out."""
    parts = []
    for name, value in sorted(options.items()):
        if isinstance(value, Mapping):
            nested = format_options(value, f"{prefix}{name}.")
            if nested:
                parts.append(nested)
        elif value not in (None, [], ""):
            shown = ", ".join(map(_scalar, value)) if isinstance(value, list | tuple) else _scalar(value)
            parts.append(f"{prefix}{name}={'[' + shown + ']' if isinstance(value, list | tuple) else shown}")
    return "; ".join(parts)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def wrappable(text: str) -> str:
    """Let long path-like tokens wrap after "/" (a zero-width space) instead of at an arbitrary letter."""
    return " ".join(token.replace("/", "/\u200b") if len(token) > _LONG_TOKEN else token for token in text.split(" "))


def _base_name(own: Sequence[Manifest], lineage: Sequence[Manifest], runs: Sequence[RunRef],
               plain: Sequence[Mapping[str, Any]]) -> str:
    base = _first([m.base_model for m in [*own, *lineage] if m.base_model.id])
    name = base.name if base is not None else None
    if name is None and runs:
        # An eval of a plain model (no atax checkpoint) records what it was asked for and what it loaded:
        # the reference as the user gave it is the same form the manifests of trained checkpoints use.
        target = runs[0].run_meta.get("target") or {}
        name = target.get("ref") or target.get("model")
    # A GGUF model's source file and quantisation: recorded with a plain model's eval, or with the base.
    gguf = _first([*(p.get("gguf") for p in plain), base.details.get("gguf") if base else None])
    if isinstance(gguf, Mapping) and gguf.get("sha256"):
        name = f"{name or MISSING} (GGUF {gguf.get('file', '')} {gguf.get('quantization', '')}, " \
               f"sha256 {str(gguf['sha256'])[:12]})"
    return str(name or MISSING)


def _method(own: Sequence[Manifest], runs: Sequence[RunRef]) -> str:
    method = _first([m.provenance.registered_method for m in own])
    if method is None and runs:
        method = runs[0].row.split("[", 1)[0]  # e.g. a scaled control: its manifest names no method
    merge = _first([m.merge.op for m in own if m.merge is not None])
    variant = _first([m.variant for m in own])
    return ", ".join(x for x in (method or MISSING, f"merge {merge}" if merge else None, variant) if x)


def _sandbox(store: ResultsStore, runs: Sequence[RunRef]) -> str:
    levels: dict[str, str] = {}
    for run in runs:
        level = run.run_meta.get("sandbox_level")
        if level is None:
            level = _first([s.meta.get("sandbox_level") for s in store.scores(eval_id=run.eval_id)])
        if level:
            levels[run.benchmark] = str(level)
    return ", ".join(f"{benchmark}: {level}" for benchmark, level in sorted(levels.items())) or MISSING


def row_provenance(store: ResultsStore, runs: Sequence[RunRef]) -> dict[str, str]:
    """Display strings for one table row, from all its eval runs (every seed, every benchmark)."""
    keys = sorted({r.checkpoint for r in runs})
    own = [m for k in keys if (m := stored_manifest(store, k)) is not None]
    lineage = [o for k in keys for o in origins(store, k)]
    base_ids = sorted({m.base_model.id for m in [*own, *lineage] if m.base_model.id})  # evaluated as rows too
    data_source = _first([m.provenance.data for m in [*own, *lineage]])
    sizes = sorted({s for k in keys if (s := data_size(store, k)) is not None})
    code = _first([o.training.code_version for o in lineage if o.training is not None]) or {}
    options = _first([method_options(store, k) for k in keys]) or {}
    meta = runs[0].run_meta if runs else {}
    seeds = sorted({r.seed for r in runs if r.seed is not None})
    size_text = f" ({', '.join(f'{s:,}' for s in sizes)} examples)" if sizes else ""
    fields = {
        "base model": _base_name(own, lineage, runs, [stored_record(store, k) for k in [*keys, *base_ids]]),
        "data": (str(data_source) if data_source else MISSING) + size_text,
        "method": _method(own, runs),
        "options": format_options(options) or MISSING,
        "seeds": ", ".join(map(str, seeds)) or MISSING,
        "code version": ", ".join(f"{k} {v}" for k, v in sorted(code.items())) or MISSING,
        "eval": ", ".join(f"{k} {meta[k]}" for k in ("backend", "lm_eval_version") if meta.get(k)) or MISSING,
        "code sandbox": _sandbox(store, runs),
        "checkpoints": ", ".join(keys),
    }
    return {name: wrappable(text) for name, text in fields.items()}
