"""The code stays easy to pick up: no file over 400 lines, no function over 80, and no new
function-level import outside the places that import lazily on purpose (the CLI, the registry and
the backends keep `atax --help` free of torch; elsewhere a lazy import hides a dependency).

Function-level imports and lines over 110 characters that exist are counted per file in
FUNCTION_IMPORTS_BASELINE / LONG_LINES_BASELINE (a ratchet: the line limit binds new code, and old
long lines go as their files are touched); a file may lose some, never gain. Regenerate the
baselines with `python tests/test_code_shape.py` only to record a reduction, or an addition that
must stay, with a reason in the commit message.
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
MAX_LINE_LENGTH = 110  # pyproject's ruff line-length
BASELINE = Path(__file__).parent / "function_imports_baseline.json"
LONG_LINES_BASELINE = Path(__file__).parent / "long_lines_baseline.json"


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


def long_line_counts() -> dict[str, int]:
    counts = {}
    for path in python_files():
        found = sum(len(line) > MAX_LINE_LENGTH for line in path.read_text(encoding="utf-8").splitlines())
        if found:
            counts[rel(path)] = found
    return counts


def test_no_new_lines_over_110_characters() -> None:
    baseline = json.loads(LONG_LINES_BASELINE.read_text(encoding="utf-8"))
    grown = {name: (count, baseline.get(name, 0)) for name, count in long_line_counts().items()
             if count > baseline.get(name, 0)}
    assert not grown, f"new lines over {MAX_LINE_LENGTH} characters (file: (now, allowed)); wrap them: {grown}"


if __name__ == "__main__":  # regenerate the baselines: python tests/test_code_shape.py
    BASELINE.write_text(json.dumps(current_counts(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    LONG_LINES_BASELINE.write_text(json.dumps(long_line_counts(), indent=1, sort_keys=True) + "\n",
                                   encoding="utf-8")
