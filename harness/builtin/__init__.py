"""Resolve `builtin:<name>` references (the tiny models, toy data, SmolLM2) to files built locally on first use.

Import-cheap on purpose: the CLI imports this for --help, so torch and transformers load only on a build.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from harness.builtin.pretrain_recipe import RECIPE
from harness.builtin.toy_facts import FACTS_VERSION, write_facts_corpus
from harness.errors import UserError
from harness.paths import cache_dir

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]

BUILTIN_PREFIX = "builtin:"

# Bump a version when its generator changes, so caches built by older code are not reused.
_VERSION = "v1"


def _build_tiny_llama(final: Path) -> None:
    from harness.builtin.tiny_model import build_tiny_llama

    _publish_dir(final, build_tiny_llama)


def _build_tiny_llama_pretrained(final: Path) -> None:
    from harness.builtin.pretrained import build_tiny_llama_pretrained

    # Pretraining takes a while: concurrent first users wait for one build instead of each running it.
    with _build_lock(final):
        if not final.exists():
            _publish_dir(final, build_tiny_llama_pretrained)


def _pretrained_name() -> str:
    recipe = hashlib.sha256(RECIPE.key().encode()).hexdigest()[:10]
    return f"tiny-llama-pretrained-{_VERSION}-facts{FACTS_VERSION}-{recipe}"


def _facts_corpus_name() -> str:
    return f"toy-facts-{_VERSION}-facts{FACTS_VERSION}-seed{RECIPE.seed}-rounds{RECIPE.rounds}.jsonl"


def _build_toy_facts(final: Path) -> None:
    write_facts_corpus(final, seed=RECIPE.seed, rounds=RECIPE.rounds)


def _build_toy_instructions(final: Path) -> None:
    from harness.builtin.toy_instructions import write_toy_instructions

    # write_text_atomic renames a complete file over the target; two racing writers write the same bytes.
    write_toy_instructions(final, n=600, seed=0)


def _build_toy_corpus(final: Path) -> None:
    from harness.builtin.toy_instructions import write_toy_corpus

    write_toy_corpus(final, n_docs=200, seed=0)


# name -> (file or directory name in the cache, builder that writes it atomically)
_BUILTINS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "tiny-llama": (f"tiny-llama-{_VERSION}", _build_tiny_llama),
    "tiny-llama-pretrained": (_pretrained_name(), _build_tiny_llama_pretrained),
    "toy-instructions": (f"toy-instructions-{_VERSION}.jsonl", _build_toy_instructions),
    "toy-corpus": (f"toy-corpus-{_VERSION}.jsonl", _build_toy_corpus),
    "toy-facts": (_facts_corpus_name(), _build_toy_facts),
}


def _smollm2_dir(cache: Path) -> Path:
    from harness.builtin.gguf import gguf_dir
    from harness.builtin.smollm2 import smollm2_gguf_path

    return gguf_dir(smollm2_gguf_path(), cache)


# Real models shipped as GGUF files by installed packages: dequantised into the cache keyed by the
# file's sha256 (harness/builtin/gguf.py), so their cache name is not known before the file is found.
_GGUF_BUILTINS: dict[str, Callable[[Path], Path]] = {
    "smollm2-135m-instruct": _smollm2_dir,
}


def is_builtin(ref: object) -> bool:
    """True for any `builtin:...` string, known or not (resolving an unknown one raises)."""
    return isinstance(ref, str) and ref.startswith(BUILTIN_PREFIX)


def builtin_names() -> list[str]:
    """Every known reference, e.g. `builtin:tiny-llama`."""
    return [BUILTIN_PREFIX + name for name in (*_BUILTINS, *_GGUF_BUILTINS)]


def resolve_builtin(ref: str, cache: Path | None = None) -> Path:
    """Path of the built-in `ref`, building it on first use; `cache` overrides `harness.paths.cache_dir()`.

    Later calls (and other processes) reuse what is there: every builder publishes by an atomic
    rename, so an existing path is always a complete one.
    """
    name = ref[len(BUILTIN_PREFIX) :] if is_builtin(ref) else None
    root = Path(cache) if cache is not None else cache_dir()
    if name in _GGUF_BUILTINS:
        return _GGUF_BUILTINS[name](root)
    if name not in _BUILTINS:
        raise UserError(f"unknown built-in '{ref}'; known: {', '.join(builtin_names())}")
    filename, build = _BUILTINS[name]
    final = root / "builtin" / filename
    if not final.exists():
        final.parent.mkdir(parents=True, exist_ok=True)
        build(final)
    return final


@contextlib.contextmanager
def _build_lock(final: Path) -> Iterator[None]:
    """Hold an exclusive lock on `final`'s lock file (a sibling) for one build; no lock where the OS has
    no flock (the staging rename below still keeps a half-built `final` from ever being seen)."""
    if fcntl is None:
        yield
        return
    with open(final.with_name(final.name + ".lock"), "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _publish_dir(final: Path, build: Callable[[Path], object]) -> None:
    """Build into a private staging directory, then rename it to `final` unless another process won.

    atomic_dir on `final` itself would swap out a directory a concurrent first user may already be
    reading; renaming a staging directory never replaces an existing `final`.
    """
    staging = final.with_name(f".{final.name}.staging-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        build(staging)
        try:
            staging.rename(final)
        except OSError as error:
            # rename(2) onto an existing non-empty directory fails: another process published first.
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not final.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
