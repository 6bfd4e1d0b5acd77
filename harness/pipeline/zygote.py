"""A warm parent for job processes: imports the heavy libraries once, then forks a child per job.

`python -m harness.pipeline.worker` pays ~6 s of imports (torch, transformers, peft, lm-eval)
before a job does anything; the quick start has ~70 jobs. This process pays them once. Each job
still runs in its own fresh child process (forked here, before any torch computation or CUDA
initialisation happens in this process), so a job's memory, GPU included, is returned when it
ends and a crashing job cannot harm the next one.

Protocol (one job at a time), on this process's stdin / stdout:
  in:  one JSON line {"job": JOB.json path, "stdout": path, "stderr": path} (the child's output)
  out: one JSON line {"exit_code": N} once the child has ended (N < 0: killed by signal -N)
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from typing import TextIO

from harness.fast_exit import exit_code, exit_now
from harness.pipeline.executors import die_with_parent

# Imported before any fork. Only imports: no torch op may run here, so that no OpenMP pool or
# CUDA context exists to be inherited half-alive by the children.
PRELOAD = ("torch", "transformers", "peft", "lm_eval.evaluator", "harness.pipeline.steps",
           "harness.train.engine", "harness.evaluate.runner",
           "evaluate")  # HF evaluate: lm-eval's code tasks import it (~0.8 s a knowledge eval otherwise)


def _child(request: dict[str, str], channel: TextIO, replies: int, parent: int) -> None:
    die_with_parent()
    if os.getppid() != parent:  # the zygote died between fork and prctl
        os._exit(1)
    channel.close()
    os.close(replies)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(file, fd)
        os.close(file)
    sys.argv = ["harness.pipeline.worker", request["job"]]
    from harness.pipeline import worker

    try:
        worker.main()  # ends with sys.exit
    except SystemExit as exc:
        exit_now(exit_code(exc))  # the job is done: skip the interpreter's teardown of torch & co.
    except BaseException:  # a bug outside the job's own error handling: as an uncaught exception would
        traceback.print_exc()
        exit_now(1)
    exit_now(0)


def main() -> None:
    die_with_parent()
    # The request/reply channel gets private fds; 0 and 1 point at /dev/null so that nothing a
    # library prints can corrupt it.
    requests, replies = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    # A CUDA runtime touched before fork() is unusable in the children; torch's NVML-based
    # availability check does not touch it (libraries ask torch.cuda.is_available() on import).
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional extra; the job imports (and reports) it itself
            pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        sys.exit(3)  # before serving any job: the executor falls back to fresh interpreters
    reader = os.fdopen(requests, "r", encoding="utf-8")
    me = os.getpid()
    for line in reader:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request, reader, replies, me)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        os.write(replies, (json.dumps({"exit_code": code}) + "\n").encode())


if __name__ == "__main__":
    main()
