"""Sandboxed execution of model-written Python programs (HumanEval/MBPP completions plus their tests).

`run_program` / `run_programs` give one `ExecutionResult` per program; `Limits` sets what a program may
use; `sandbox_level` says which boundary this machine gives (levels.py). What the OS isolates and what
only the in-process guard does: see confine.py, runner.py and bootstrap.py.
"""

from harness.sandbox.levels import LEVEL_ENV, LEVELS, Level, os_boundary_problem, sandbox_level
from harness.sandbox.limits import Limits
from harness.sandbox.runner import ExecutionResult, Status, run_program, run_programs

__all__ = ["ExecutionResult", "LEVELS", "LEVEL_ENV", "Level", "Limits", "Status", "os_boundary_problem",
           "run_program", "run_programs", "sandbox_level"]
