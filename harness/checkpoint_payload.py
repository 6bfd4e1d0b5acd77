"""Cheap integrity checks of a checkpoint's files, run whenever one is opened: the files its kind
needs are present, every JSON file parses, and every safetensors file is as long as its header says
(a truncated copy or an interrupted download is caught without reading the weights).

A failure is one line naming the file and saying what to do, never a loader's traceback. Adapter
configs are written here too, in one canonical form (`write_adapter_config`).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from harness.errors import UserError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ENSEMBLE_MEMBERS = "members"
_MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit


def _fix(checkpoint_dir: Path) -> str:
    return f"the checkpoint {checkpoint_dir} is damaged; delete it and train or merge it again"


def check_payload(checkpoint_dir: Path, kind: str) -> None:
    """Raise a one-line UserError when the files of a `kind` checkpoint are missing or damaged."""
    checkpoint_dir = Path(checkpoint_dir)
    if kind == "lora":
        _require(checkpoint_dir, checkpoint_dir, (ADAPTER_CONFIG, ADAPTER_WEIGHTS))
    elif kind == "ensemble":
        members = checkpoint_dir / ENSEMBLE_MEMBERS
        found = sorted(p for p in members.iterdir() if p.is_dir()) if members.is_dir() else []
        if not found:
            raise UserError(f"{members}: no ensemble members; {_fix(checkpoint_dir)}")
        for member in found:
            _require(checkpoint_dir, member, (ADAPTER_CONFIG, ADAPTER_WEIGHTS))
    elif kind == "dense":
        _require(checkpoint_dir, checkpoint_dir, ("config.json",))
        if not any(not f.name.startswith("adapter_") for f in checkpoint_dir.glob("*.safetensors")):
            raise UserError(f"{checkpoint_dir}: no *.safetensors weights; {_fix(checkpoint_dir)}")
    for file in sorted(checkpoint_dir.rglob("*")):
        if file.suffix == ".json" and file.is_file():
            check_json(file, checkpoint_dir)
        elif file.suffix == ".safetensors" and file.is_file():
            check_safetensors(file, checkpoint_dir)


def _require(checkpoint_dir: Path, directory: Path, names: tuple[str, ...]) -> None:
    for name in names:
        if not (directory / name).is_file():
            raise UserError(f"{directory / name}: missing; {_fix(checkpoint_dir)}")


def check_json(file: Path, checkpoint_dir: Path) -> None:
    try:
        json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{file}: not valid JSON ({exc}); {_fix(checkpoint_dir)}") from None


def check_safetensors(file: Path, checkpoint_dir: Path) -> None:
    """The file holds an 8-byte header length, a JSON header and exactly the bytes its tensors span."""
    size = file.stat().st_size
    problem = None
    with file.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            problem = f"{size} bytes, shorter than a safetensors header"
        else:
            (header_len,) = struct.unpack("<Q", head)
            if header_len > _MAX_HEADER_BYTES or 8 + header_len > size:
                problem = f"header of {header_len} bytes in a file of {size}"
            else:
                problem = _header_problem(handle.read(header_len), size - 8 - header_len)
    if problem:
        raise UserError(f"{file}: truncated or corrupt safetensors ({problem}); {_fix(checkpoint_dir)}")


def _header_problem(raw: bytes, data_bytes: int) -> str | None:
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "unreadable header"
    if not isinstance(header, dict):
        return "unreadable header"
    ends = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            return f"tensor {name} has no data offsets"
        ends.append(offsets[1])
    expected = max(ends, default=0)
    if expected != data_bytes:
        return f"{data_bytes} bytes of tensor data where the header needs {expected}"
    return None


# peft holds these as sets and writes them in the process's string-hash order (PYTHONHASHSEED): sorted,
# equal adapters are equal files, so their content hashes (and lm-eval's response cache) match across runs
_SET_FIELDS = ("target_modules", "exclude_modules")


def write_adapter_config(out_dir: Path, config: dict[str, Any]) -> None:
    canonical = {k: sorted(v) if k in _SET_FIELDS and isinstance(v, list) else v for k, v in config.items()}
    text = json.dumps(canonical, indent=2, sort_keys=True)
    (Path(out_dir) / ADAPTER_CONFIG).write_text(text, encoding="utf-8")
