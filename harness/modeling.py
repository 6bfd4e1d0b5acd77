"""Load a base model and tokenizer from a built-in, a local directory, a GGUF file or the hub (one place)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.builtin import is_builtin, resolve_builtin
from harness.builtin.gguf import gguf_dir, gguf_facts, is_gguf_ref
from harness.errors import UserError


def resolve_model_ref(ref: str) -> str:
    """A path or hub id that `from_pretrained` understands.

    Built-ins are built on first use; a `.gguf` file is dequantised once into an HF directory in the cache.
    """
    if is_builtin(ref):
        return str(resolve_builtin(ref))
    if is_gguf_ref(ref):
        return str(gguf_dir(Path(ref)))
    return ref


def model_source_facts(ref: str) -> dict[str, Any]:
    """Provenance of a model that atax converted: {"gguf": {file, sha256, quantization, ...}}, else {}.

    Goes into the `base_model` record of checkpoint manifests, beside the id as configured.
    """
    if not (is_builtin(ref) or is_gguf_ref(ref)):
        return {}
    facts = gguf_facts(Path(resolve_model_ref(ref)))
    return {"gguf": facts} if facts else {}


def resolve_model_dir(ref: str, revision: str | None = None) -> Path:
    """A local directory with the model's files (hub models: the local hub cache, fetched if allowed)."""
    path = Path(resolve_model_ref(ref)).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(ref, revision=revision, allow_patterns=[
            "*.json", "*.safetensors", "tokenizer*", "*.model", "*.jinja"]))
    except Exception as exc:  # the hub client raises many types; the user needs one line
        raise UserError(f"base_model.id: cannot find '{ref}' locally or on the hub ({_first_line(exc)}); "
                        "download it first or give a local directory") from None


def pick_device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(name: str, device: Any) -> Any:
    """`auto`: bfloat16 on a GPU that supports it, else float32 (CPU kernels want float32)."""
    import torch

    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_tokenizer(ref: str, revision: str | None = None) -> Any:
    from transformers import AutoTokenizer

    path = resolve_model_ref(ref)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
    except (OSError, ValueError) as exc:
        raise UserError(f"base_model.id: cannot load a tokenizer from '{ref}' ({_first_line(exc)}); "
                        "give a local model directory or download the model first") from None
    if tokenizer.pad_token_id is None:
        # Llama tokenizers ship without a pad token; padding positions never carry loss anyway.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(ref: str, revision: str | None, dtype: str, device: Any) -> Any:
    from transformers import AutoModelForCausalLM

    path = resolve_model_ref(ref)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, revision=revision, dtype=resolve_dtype(dtype, device))
    except (OSError, ValueError) as exc:
        raise UserError(f"base_model.id: cannot load a model from '{ref}' ({_first_line(exc)}); "
                        "give a local model directory or download the model first") from None
    return model.to(device)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
