"""Sandboxed execution of model-written Python programs (HumanEval/MBPP completions plus their tests).

`run_program` / `run_programs` give one `ExecutionResult` per program; `Limits` sets what a program may
use. What is isolated by the OS and what only by the in-process guard: see runner.py and bootstrap.py.
"""

from harness.sandbox.limits import Limits
from harness.sandbox.runner import (
    ExecutionResult,
    Status,
    network_isolation_available,
    run_program,
    run_programs,
)

__all__ = ["ExecutionResult", "Limits", "Status", "network_isolation_available", "run_program", "run_programs"]
