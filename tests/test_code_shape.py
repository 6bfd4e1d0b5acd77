"""The code stays easy to pick up: no file over 400 lines, no function over 80, and no new
function-level import outside the places that import lazily on purpose (the CLI, the registry and
the backends keep `atax --help` free of torch; elsewhere a lazy import hides a dependency).

Function-level imports that exist are counted per file in FUNCTION_IMPORTS_BASELINE; a file may
lose some, never gain: move a new one to the top of its module, or raise the file's count here
with a reason in the commit message.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

ROOT = Path(__file__).parent.parent
SOURCE_DIRS = ("harness", "baselines", "dtm_method", "suites", "bench", "tests", "scripts")
LAZY_BY_DESIGN = ("harness/cli/", "harness/registry.py", "harness/evaluate/backends/", "tests/", "bench/")
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80
BASELINE = Path(__file__).parent / "function_imports_baseline.json"


def python_files() -> list[Path]:
    return sorted(p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py") if ".venv" not in p.parts)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


class _FunctionImports(ast.NodeVisitor):
    """Counts import statements that sit inside a function body (at any depth)."""

    def __init__(self) -> None:
        self.depth = 0
        self.count = 0

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Import(self, node: ast.AST) -> None:
        self.count += self.depth > 0

    visit_ImportFrom = visit_Import


def function_imports(tree: ast.AST) -> int:
    visitor = _FunctionImports()
    visitor.visit(tree)
    return visitor.count


def current_counts() -> dict[str, int]:
    counts = {}
    for path in python_files():
        name = rel(path)
        if name.startswith(LAZY_BY_DESIGN):
            continue
        found = function_imports(ast.parse(path.read_text(encoding="utf-8")))
        if found:
            counts[name] = found
    return counts


def test_no_file_over_400_lines() -> None:
    long = {rel(p): n for p in python_files() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES}
    assert not long, f"files over {MAX_FILE_LINES} lines (split them by job): {long}"


def test_no_function_over_80_lines() -> None:
    long = {}
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{rel(path)}:{node.lineno} {node.name}"] = length
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_no_new_function_level_imports() -> None:
    baseline = json.loads(BASELINE.read_text(encoding="utf-8"))
    grown = {name: (count, baseline.get(name, 0)) for name, count in current_counts().items()
             if count > baseline.get(name, 0)}
    assert not grown, ("new function-level imports (file: (now, allowed)); import at module top, or raise "
                       f"the file's count in {BASELINE.name} if it must stay lazy: {grown}")


if __name__ == "__main__":  # regenerate the baseline: python tests/test_code_shape.py
    BASELINE.write_text(json.dumps(current_counts(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
