"""Resource limits for one sandboxed program, and their translation into POSIX rlimits.

The runner sends `Limits.rlimits(timeout_s)` to the child, where bootstrap.py sets them (soft = hard)
before the program starts. A run's `timeout_s` is CPU time; the wall clock is only a backstop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

GiB = 1 << 30
MiB = 1 << 20
KiB = 1 << 10


@dataclass(frozen=True)
class Limits:
    """What one program may use. The defaults suit HumanEval/MBPP completions plus their tests."""

    cpu_time_s: int | None = field(default=None, metadata={
        "help": "CPU seconds (RLIMIT_CPU; the timeout of a run); None means ceil(timeout_s). CPU time, "
                "not wall time, so that a loaded machine cannot turn a correct program into a timeout."})
    wall_time_s: int | None = field(default=None, metadata={
        "help": "Wall-clock backstop for programs that sleep or block instead of computing; None means "
                "10 x the CPU limit + 30 s."})
    memory_bytes: int = field(default=1 * GiB, metadata={
        "help": "Address space (RLIMIT_AS): a larger allocation raises MemoryError in the program."})
    max_processes: int = field(default=64, metadata={
        "help": "RLIMIT_NPROC. Linux counts every process and thread of the (real) user, at the `os` level "
                "uid 65534 shared by all running programs; the guard refuses fork, exec and threads anyway."})
    file_size_bytes: int = field(default=16 * MiB, metadata={
        "help": "Largest file the program may write (RLIMIT_FSIZE); also bounds its stdout/stderr files."})
    open_files: int = field(default=64, metadata={"help": "Open file descriptors (RLIMIT_NOFILE)."})
    work_dir_bytes: int = field(default=64 * MiB, metadata={
        "help": "Size of the private /tmp (the cwd) at the `os` level, in memory; gone with the program."})
    output_bytes: int = field(default=64 * KiB, metadata={
        "help": "How much of stdout and of stderr the result keeps (the rest is dropped unread)."})
    site_packages: bool = field(default=False, metadata={
        "help": "Let the program import installed packages. Off by default: HumanEval/MBPP need only the "
                "standard library, and third-party C extensions can bypass the in-process guards."})

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(f.default, bool) or (f.name in ("cpu_time_s", "wall_time_s") and value is None):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Limits.{f.name} must be a positive integer, got {value!r}")

    def cpu_limit_s(self, timeout_s: float) -> int:
        """The RLIMIT_CPU value (whole seconds) for a run with this timeout."""
        return self.cpu_time_s if self.cpu_time_s is not None else max(1, math.ceil(timeout_s))

    def wall_limit_s(self, timeout_s: float) -> float:
        """When the runner kills a program that has not used up its CPU time (it sleeps or blocks)."""
        return self.wall_time_s if self.wall_time_s is not None else 10 * self.cpu_limit_s(timeout_s) + 30

    def rlimits(self, timeout_s: float) -> dict[str, int]:
        """Name of each `resource.RLIMIT_*` constant -> the value the child sets as soft and hard limit."""
        return {
            "RLIMIT_CPU": self.cpu_limit_s(timeout_s),
            "RLIMIT_AS": self.memory_bytes,
            "RLIMIT_NPROC": self.max_processes,
            "RLIMIT_FSIZE": self.file_size_bytes,
            "RLIMIT_NOFILE": self.open_files,
            "RLIMIT_CORE": 0,  # a crashing program must not drop a core file of up to 1 GiB
        }
