"""The published real-model study (results/smollm2-cpu/, see README "A real run on a CPU"): `atax report`
regenerates its report byte for byte from the committed store, and its tables carry the rows the README
reads. Skips until a study has been published."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = Path("results") / "smollm2-cpu"  # relative, as the report was written (its page names it)
pytestmark = pytest.mark.skipif(not (ROOT / PUBLISHED / "results.sqlite").is_file(),
                                reason="no published study in results/smollm2-cpu")


def _files(directory: Path) -> list[Path]:
    return sorted(p.relative_to(directory) for p in directory.rglob("*") if p.is_file())


def test_atax_report_reproduces_the_published_report(tmp_path: Path) -> None:
    published = ROOT / PUBLISHED
    epoch = json.loads((published / "versions.json").read_text())["report_epoch"]
    store = tmp_path / PUBLISHED  # a copy: opening a store may add WAL files beside it
    store.mkdir(parents=True)
    (store / "results.sqlite").write_bytes((published / "results.sqlite").read_bytes())
    out = tmp_path / "report"
    command = [sys.executable, "-m", "harness", "report", "--results", str(PUBLISHED), "--out", str(out),
               "--experiment", "smollm2-cpu", "--title", "atax: SmolLM2-135M-Instruct on a 2-core CPU"]
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)})
    assert proc.returncode == 0, proc.stderr
    assert _files(out) == _files(published / "report")
    different = [str(p) for p in _files(out)
                 if not filecmp.cmp(out / p, published / "report" / p, shallow=False)]
    assert not different, f"regenerated files differ from the published ones: {different}"


def test_published_tables_have_the_rows_the_readme_reads() -> None:
    table = (ROOT / PUBLISHED / "report" / "tables" / "knowledge.md").read_text()
    rows = {line.split("|")[1].strip() for line in table.splitlines()
            if line.startswith("| ") and "---" not in line}
    assert {"base", "vanilla", "dtm", "l2", "replay", "uniform_soup", "scaled_vanilla[alpha=0.5]"} <= rows
    figures = {p.name for p in (ROOT / PUBLISHED / "report" / "figures").iterdir()}
    assert {"frontier.png", "alignment-tax.png"} <= figures
