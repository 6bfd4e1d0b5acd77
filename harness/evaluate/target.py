"""What an evaluation runs on: an atax checkpoint, a plain model (directory, hub id, built-in,
GGUF file), or nothing but stored answers, resolved into the few facts a backend needs.

Every target has a store key and a content hash: the key names it in the results store, the
hash keys lm-eval's response cache (whose own key ignores the model) and tells two checkpoints
with equal content apart from two that only share a name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.builtin import resolve_builtin
from harness.builtin.gguf import gguf_dir, gguf_facts, is_gguf_ref
from harness.checkpoint import MANIFEST, Checkpoint
from harness.errors import UserError
from harness.keys import content_key
from harness.modeling import resolve_model_ref
from harness.sources import classify

# Weight files are fingerprinted by size plus their first and last bytes rather than read whole:
# a 13 GB model would otherwise take a minute to hash before every eval. Fine-tunes of one model
# share sizes and headers but differ in the weights right after the header.
_FULL_HASH_LIMIT = 64 << 20
_EDGE_BYTES = 4 << 20


@dataclass(frozen=True)
class EvalTarget:
    """A resolved model reference.

    `model` is what `from_pretrained` loads (a path or hub id; the base model for an adapter),
    `adapter` a peft adapter directory to put on it; both None for answers-only targets.
    """

    ref: str
    key: str
    kind: str  # base | lora | dense | ensemble | loramoe (atax checkpoints), model, answers
    content_hash: str
    model: str | None = None
    revision: str | None = None
    adapter: Path | None = None
    tokenizer: str | None = None
    path: Path | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


def resolve_target(ref: str, base_dir: Path | None = None) -> EvalTarget:
    """Resolve CHECKPOINT_OR_MODEL: an atax checkpoint dir, an HF model dir, a GGUF file, a hub id or a built-in."""
    base_dir = base_dir or Path.cwd()
    source = classify(ref, base_dir)
    if source.kind == "builtin":
        path = resolve_builtin(ref)
        return _converted_model(ref, ref, path)
    if source.kind == "hub":
        return EvalTarget(ref, ref, "model", content_key({"hub": ref, "commit": _cached_commit(ref)}), model=ref)
    path = source.path
    assert path is not None
    if is_gguf_ref(ref) and not path.is_dir():
        if not path.is_file():
            raise UserError(f"CHECKPOINT_OR_MODEL: GGUF file '{path}' not found; give an existing .gguf file")
        return _converted_model(ref, str(path), gguf_dir(path))
    if (path / MANIFEST).is_file():
        return _from_checkpoint(Checkpoint.load(path))
    if not path.is_dir():
        raise UserError(f"CHECKPOINT_OR_MODEL: '{ref}' is neither a directory nor a hub id (org/name); "
                        "give an atax checkpoint, a Hugging Face model directory, a .gguf file, a hub id "
                        "or builtin:tiny-llama")
    if not (path / "config.json").is_file():
        raise UserError(f"CHECKPOINT_OR_MODEL: {path} has no {MANIFEST} and no config.json; "
                        "give an atax checkpoint or a Hugging Face model directory")
    return EvalTarget(ref, str(path), "model", _fingerprint(path), model=str(path), path=path)


def _converted_model(ref: str, key: str, path: Path) -> EvalTarget:
    """A model atax built or converted into `path`; a GGUF one is keyed by its source file's sha256."""
    facts = gguf_facts(path)
    if facts is None:
        return EvalTarget(ref, key, "model", _fingerprint(path), model=str(path), path=path)
    content_hash = content_key({"gguf_sha256": facts["sha256"], "conversion": facts.get("conversion")})
    return EvalTarget(ref, key, "model", content_hash, model=str(path), path=path, provenance={"gguf": facts})


def outputs_target(backend: str, files: list[Path], options: dict[str, Any]) -> EvalTarget:
    """A target with no model: outputs produced elsewhere (the answers backend), keyed by their bytes."""
    digest = content_key({"backend": backend, "options": options, "files": [_file_sha256(f) for f in files]})
    label = files[0].name if files else "outputs"
    return EvalTarget(f"{backend}:{label}", f"{backend}:{label}@{digest[:12]}", "answers", digest,
                      provenance={"backend": backend, "files": [str(f) for f in files]})


def _from_checkpoint(checkpoint: Checkpoint) -> EvalTarget:
    base_id = checkpoint.base_model.id if checkpoint.kind == "dense" else checkpoint.require_base_id()
    base_model = resolve_model_ref(base_id) if base_id else base_id  # built-ins and GGUF files: their HF dir
    # The training runner records checkpoints under this key, so an eval lands on the same row.
    key = checkpoint.store_key
    common: dict[str, Any] = {"revision": checkpoint.base_model.revision, "path": checkpoint.path,
                              "provenance": checkpoint.manifest}
    content_hash = checkpoint.content_hash()
    kind = checkpoint.kind
    if kind == "lora":
        return EvalTarget(str(checkpoint.path), key, kind, content_hash, model=base_model,
                          adapter=checkpoint.path, **common)
    if kind == "dense":
        # Dense weights sit in the checkpoint directory; its tokenizer may live only with the base.
        has_tokenizer = any((checkpoint.path / name).is_file()
                            for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"))
        return EvalTarget(str(checkpoint.path), key, kind, content_hash, model=str(checkpoint.path),
                          tokenizer=None if has_tokenizer else base_model, **common)
    if kind == "base":
        return EvalTarget(str(checkpoint.path), key, kind, content_hash, model=base_model, **common)
    # ensemble / loramoe: resolved here, refused by backends that cannot run them.
    return EvalTarget(str(checkpoint.path), key, kind, content_hash, model=base_model, **common)


def _fingerprint(directory: Path) -> str:
    """sha256 over relative paths and contents; large files by size and their first and last bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(directory)}\0{size}\0".encode())
        with path.open("rb") as handle:
            if size <= _FULL_HASH_LIMIT:
                digest.update(handle.read())
            else:
                digest.update(handle.read(_EDGE_BYTES))
                handle.seek(size - _EDGE_BYTES)
                digest.update(handle.read(_EDGE_BYTES))
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cached_commit(repo_id: str) -> str | None:
    """The commit of a hub model already in the local HF cache, so its hash follows the weights."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # an odd id or an unreadable cache only costs cache precision
        return None
    return Path(found).parent.name if isinstance(found, str) else None
