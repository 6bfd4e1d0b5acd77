"""pass@k over atax's sandbox, standing in for the hub's `code_eval` metric in lm-eval's code tasks.

lm-eval's humaneval/mbpp tasks call `evaluate.load("code_eval")`, which needs the hub, at import
of their `utils.py`. `preload_lm_eval_code_modules` imports those modules once with that one call
answered by `SandboxCodeEval`, so lm-eval's own prompts, stop sequences and filters keep working
offline; our task overlays then name `pass_at_k` below as the metric.

Model-written code runs only inside `code_execution_scope()`, which the knowledge suite enters for the
one evaluation whose user passed --allow-code-execution and leaves afterwards; outside it these
functions refuse. (Not HF_ALLOW_CODE_EVAL: an environment variable set for one eval would stay set for
every later one in the process.) The scope also fixes the sandbox level, stored with the scores.
A completion that would swallow the tests appended to it as text fails without running (`tests_intact`).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import logging
from collections.abc import Iterator, Sequence
from math import comb
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.sandbox import Level, run_programs, sandbox_level

logger = logging.getLogger(__name__)

# evaluate's code_eval default, which lm-eval's code tasks and bigcode-evaluation-harness use; here CPU
# seconds (theirs are wall seconds), so that a loaded machine cannot fail a correct program.
CODE_TIMEOUT_S = 3.0
# How the sandbox ended each program (sha256 of its text -> passed/failed/timeout/error), so the suite
# can tell a timeout from a wrong answer in each item record; lm-eval keeps only the metric value.
EXECUTIONS: dict[str, str] = {}


def pass_at_k(references: Sequence[str], predictions: Sequence[Any], k: Sequence[int] | int = (1,)) -> dict[str, float]:
    """Unbiased pass@k (Chen et al., 2021), averaged over references.

    Each prediction is one program text or a list of candidates; a candidate passes when
    `candidate + "\\n" + reference` runs to the end in the sandbox (as `code_eval` builds it).
    """
    ks = [k] if isinstance(k, int) else list(k)
    candidates = [[p] if isinstance(p, str) else list(p) for p in predictions]
    passed = _run(list(references), candidates)
    out = {}
    for kk in ks:
        if all(len(c) >= kk for c in candidates):
            values = [_estimate(len(c), n_ok, kk) for c, n_ok in zip(candidates, passed, strict=True)]
            out[f"pass@{kk}"] = sum(values) / len(values)
    return out


class SandboxCodeEval:
    """The `compute` API of evaluate's code_eval, executed in atax's sandbox."""

    def compute(self, references: Sequence[str], predictions: Sequence[Sequence[str]],
                k: Sequence[int] = (1, 10, 100), num_workers: int = 4, timeout: float = CODE_TIMEOUT_S,
                ) -> tuple[dict[str, float], dict[int, list[Any]]]:
        candidates = [list(p) for p in predictions]
        passed = _run(list(references), candidates)
        scores = {f"pass@{kk}": sum(_estimate(len(c), n, kk) for c, n in zip(candidates, passed, strict=True))
                  / len(candidates) for kk in k if all(len(c) >= kk for c in candidates)}
        return scores, {}


def build_stripped_predictions(resps: list[list[str]], docs: list[dict[str, Any]]) -> list[list[str]]:
    """bigcode's HumanEval program: the prompt with trailing whitespace stripped, then the completion."""
    return [[doc["prompt"].strip() + r for r in resp] for resp, doc in zip(resps, docs, strict=True)]


def build_mbpp_bigcode_predictions(resps: list[list[str]], docs: list[dict[str, Any]]) -> list[list[str]]:
    """bigcode's MBPP program: the docstring prompt, then the completion (the tests come as reference)."""
    return [[mbpp_bigcode_prompt(doc) + r for r in resp] for resp, doc in zip(resps, docs, strict=True)]


def mbpp_bigcode_prompt(doc: dict[str, Any]) -> str:
    return f'"""\n{doc["text"]}\n{doc["test_list"][0]}\n"""\n'


def program_key(program: str) -> str:
    return hashlib.sha256(program.encode("utf-8")).hexdigest()


_granted: list[Level] = []  # the levels of the enclosing code_execution_scope()s, innermost last


@contextlib.contextmanager
def code_execution_scope(level: Level | None = None) -> Iterator[Level]:
    """Let the code benchmarks run model-written code inside this block, at `level` (default: what
    `harness.sandbox.sandbox_level()` gives this machine; it raises UserError where nothing may run)."""
    _granted.append(level or sandbox_level())
    try:
        yield _granted[-1]
    finally:
        _granted.pop()


def code_execution_allowed() -> bool:
    return bool(_granted)


def preload_lm_eval_code_modules() -> None:
    """Import lm-eval's humaneval and mbpp `utils.py` with `evaluate.load("code_eval")` served by the sandbox.

    lm-eval caches these modules by file path and mtime, so its YAML loader reuses them instead of
    importing them again (which would call the hub).
    """
    import evaluate
    import lm_eval
    from lm_eval.tasks._yaml_loader import _load_module_with_cache

    tasks_dir = Path(lm_eval.__file__).parent / "tasks"
    original = evaluate.load

    def load(path: str, *args: Any, **kwargs: Any) -> Any:
        return SandboxCodeEval() if path == "code_eval" else original(path, *args, **kwargs)

    evaluate.load = load
    try:
        # Importing them runs lm-eval's own constant smoke test (add(2, 3)), not model-written code: it may
        # run at the in-process level, so that merely loading the tasks needs no opt-in.
        with code_execution_scope("process"):
            for name in ("humaneval", "mbpp"):
                _load_module_with_cache((tasks_dir / name / "utils.py").resolve())
    finally:
        evaluate.load = original


def _run(references: list[str], candidates: list[list[str]]) -> list[int]:
    """Number of passing candidates per reference."""
    if not code_execution_allowed():
        raise UserError("refusing to run model-written code: pass --allow-code-execution to run the code "
                        "benchmarks in the sandbox")
    programs, owners, swallowed = [], [], set()
    for index, (reference, cands) in enumerate(zip(references, candidates, strict=True)):
        for candidate in cands:
            if not tests_intact(candidate, reference):
                swallowed.add(len(programs))
            programs.append(f"{candidate}\n{reference}")
            owners.append(index)
    to_run = [i for i in range(len(programs)) if i not in swallowed]
    results = dict(zip(to_run, run_programs([programs[i] for i in to_run], timeout_s=CODE_TIMEOUT_S,
                                            level=_granted[-1]), strict=True))
    passed = [0] * len(references)
    for i, (program, owner) in enumerate(zip(programs, owners, strict=True)):
        status = results[i].status if i in results else "failed"
        EXECUTIONS[program_key(program)] = status
        if status == "error":
            # The sandbox failed before the program started: not the model's fault, so say so.
            logger.warning("sandbox error (counted as a failure): %s", results[i].stderr.strip()[-300:])
        passed[owner] += status == "passed"
    if swallowed:
        logger.info("%d completion(s) failed without running: the tests after them no longer parse as "
                    "their own statements", len(swallowed))
    return passed


def tests_intact(candidate: str, tests: str) -> bool:
    """Whether `tests`, appended to `candidate` as text (as code_eval does), are still the program's last
    top-level statements, unchanged.

    A completion crafted against the test text could otherwise swallow the tests: open a string that
    a quote in the tests closes, so that the asserts become data and the program exits 0.
    """
    try:
        expected = ast.parse(tests).body
        body = ast.parse(f"{candidate}\n{tests}").body
    except (SyntaxError, ValueError):
        return True  # nothing to compare: the program fails (or passes) on its own when run
    tail = body[len(body) - len(expected):] if len(body) >= len(expected) else None
    return tail is not None and [ast.dump(a) for a in tail] == [ast.dump(b) for b in expected]


def _estimate(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k): the chance that k of n samples include a passing one."""
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)
