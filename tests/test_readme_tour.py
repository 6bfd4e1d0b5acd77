"""The README's five-minute tour runs as written: every `atax` command of its block, in a fresh
directory, exits 0, and the page it promises exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from conftest import run_atax

README = Path(__file__).parent.parent / "README.md"


def tour_commands() -> list[list[str]]:
    block = README.read_text(encoding="utf-8").split("<!-- tour -->", 1)[1]
    script = re.search(r"```bash\n(.*?)```", block, re.S).group(1).replace("\\\n", " ")
    commands = []
    for line in script.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            words = shlex.split(line)
            assert words[0] == "atax", f"the tour runs atax commands only: {line}"
            commands.append(words[1:])
    return commands


def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    commands = tour_commands()
    assert [c[0] for c in commands] == ["eval", "table", "report"]
    for args in commands:
        result = run_atax(*args, cwd=tmp_path, timeout=600)
        assert result.returncode == 0, (args, result.stderr[-2000:])
    assert (tmp_path / "tour-report" / "index.html").is_file()
