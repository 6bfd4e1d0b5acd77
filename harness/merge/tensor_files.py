"""Read and write safetensors files in row chunks with plain file I/O, so memory stays O(chunk).

safetensors' own loader memory-maps files; the pages it touches stay resident (and count in
the process's RSS) while mapped, so a K-way merge would hold K models. Here rows are read with
`pread` into fresh buffers, and output files are written header-first (shapes are known from
the base model), tensor bytes appended as they are produced.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
NAMES = {v: k for k, v in DTYPES.items()}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return numel(self.shape) * torch.empty((), dtype=self.dtype).element_size()

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def row_bytes(self) -> int:
        return self.nbytes // max(self.rows, 1)


def numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


class TensorFile:
    """One safetensors file: its specs, and rows of any tensor read on demand."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY)
        (header_len,) = struct.unpack("<Q", os.pread(self._fd, 8, 0))
        header = json.loads(os.pread(self._fd, header_len, 8))
        self._data_start = 8 + header_len
        header.pop("__metadata__", None)
        self.specs: dict[str, TensorSpec] = {}
        self._offsets: dict[str, int] = {}
        for name, info in header.items():
            self.specs[name] = TensorSpec(name, DTYPES[info["dtype"]], tuple(info["shape"]))
            self._offsets[name] = info["data_offsets"][0]

    def read_rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        spec = self.specs[name]
        begin = self._data_start + self._offsets[name] + start * spec.row_bytes
        raw = bytearray(os.pread(self._fd, (stop - start) * spec.row_bytes, begin))
        tensor = torch.frombuffer(raw, dtype=spec.dtype) if raw else torch.empty(0, dtype=spec.dtype)
        return tensor.reshape((stop - start, *spec.shape[1:]) if spec.shape else ())

    def close(self) -> None:
        os.close(self._fd)


class TensorWriter:
    """Writes one safetensors file whose tensors are declared up front and appended in order."""

    def __init__(self, path: Path, specs: list[TensorSpec]) -> None:
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for spec in specs:
            header[spec.name] = {"dtype": NAMES[spec.dtype], "shape": list(spec.shape),
                                 "data_offsets": [offset, offset + spec.nbytes]}
            offset += spec.nbytes
        encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
        encoded += b" " * (-len(encoded) % 8)  # the format pads the header to 8 bytes
        self._handle = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._handle.write(struct.pack("<Q", len(encoded)) + encoded)
        self._expected = [(s.name, s.nbytes) for s in specs]
        self._position, self._written = 0, 0

    def write(self, name: str, chunk: torch.Tensor) -> None:
        """Append the next rows of tensor `name` (tensors and rows must come in declared order)."""
        expected_name, expected_bytes = self._expected[self._position]
        if name != expected_name:
            raise ValueError(f"tensor {name} written out of order; expected {expected_name}")
        data = chunk.contiguous().view(torch.uint8).numpy().tobytes() if chunk.numel() else b""
        self._handle.write(data)
        self._written += len(data)
        if self._written == expected_bytes:
            self._position, self._written = self._position + 1, 0
        elif self._written > expected_bytes:
            raise ValueError(f"tensor {name}: more bytes written than its shape holds")

    def close(self) -> None:
        if self._position != len(self._expected):
            raise ValueError(f"{len(self._expected) - self._position} tensors were never written")
        self._handle.close()
