"""Turn a GGUF model file into a plain Hugging Face directory, once, under the atax cache.

transformers can read GGUF, but only by dequantising every tensor on each load and with a
`quantization_config` that its own save, peft and vLLM then trip over. So the file is dequantised
once into `<cache>/gguf/<stem>-<sha256[:16]>` (float32 safetensors, tokenizer, chat template), keyed
by the file's content, and every later load (training, merging, serving, vLLM) reads that directory.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.paths import cache_dir

GGUF_SUFFIX = ".gguf"
# Written into every dequantised directory: what it was made from (provenance reads it back).
SOURCE_RECORD = "atax_gguf_source.json"
# Bump when the conversion changes, so directories written by older code are not reused.
_CONVERSION_VERSION = "v1"


def is_gguf_ref(ref: object) -> bool:
    """True for a reference naming a GGUF file (`path/to/model.gguf`)."""
    return isinstance(ref, str) and ref.lower().endswith(GGUF_SUFFIX)


def gguf_dir(gguf_path: Path, cache: Path | None = None) -> Path:
    """The dequantised HF directory of `gguf_path`, built on first use (atomically; racing builders are fine)."""
    from harness.builtin import _publish_dir

    gguf_path = Path(gguf_path).expanduser().resolve()
    if not gguf_path.is_file():
        raise UserError(f"GGUF file '{gguf_path}' not found; give the path of an existing .gguf model file")
    sha = file_sha256(gguf_path)
    root = Path(cache) if cache is not None else cache_dir()
    final = root / "gguf" / f"{gguf_path.stem}-{sha[:16]}-{_CONVERSION_VERSION}"
    if not final.is_dir():
        final.parent.mkdir(parents=True, exist_ok=True)
        _publish_dir(final, lambda staging: _dequantise(gguf_path, sha, staging))
    return final


def gguf_facts(model_dir: Path) -> dict[str, Any] | None:
    """What a dequantised directory was made from (file, sha256, quantisation), or None for other dirs."""
    record = Path(model_dir) / SOURCE_RECORD
    if not record.is_file():
        return None
    return json.loads(record.read_text(encoding="utf-8"))


def file_sha256(path: Path) -> str:
    stat = Path(path).stat()
    return _sha256_of(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by size and mtime too, so a file replaced in place is hashed again.
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def quantisation_of(gguf_path: Path) -> str:
    """The file's quantisation as GGUF names it (`general.file_type`, e.g. MOSTLY_Q4_1)."""
    import gguf

    reader = gguf.GGUFReader(str(gguf_path))
    field = reader.fields.get("general.file_type")
    if field is None:
        return "unknown"
    value = int(field.parts[field.data[0]][0])
    try:
        return gguf.LlamaFileType(value).name
    except ValueError:
        return f"file_type={value}"


def _dequantise(gguf_path: Path, sha: str, out_dir: Path) -> None:
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file; say so in one line)
    except ImportError:
        raise UserError(f"reading '{gguf_path.name}' needs the gguf package: pip install gguf") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.builtin.tiny_model import _use_portable_tokenizer_class

    try:
        loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                      dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot read GGUF model '{gguf_path}' ({str(exc).strip().splitlines()[0]}); "
                        "give a GGUF file of an architecture transformers can load") from None
    # The GGUF loader leaves a quantization_config behind although the weights are now plain float32;
    # saved as is, every later from_pretrained would try to dequantise again. Rebuild without it.
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = type(loaded.config).from_dict(config_dict)
    model = type(loaded)(config).to(torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    out_dir.mkdir(parents=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    _use_portable_tokenizer_class(out_dir / "tokenizer_config.json")
    facts = {"file": gguf_path.name, "sha256": sha, "size": gguf_path.stat().st_size,
             "quantization": quantisation_of(gguf_path), "dequantised_to": "float32",
             "conversion": _CONVERSION_VERSION}
    (out_dir / SOURCE_RECORD).write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n", encoding="utf-8")
