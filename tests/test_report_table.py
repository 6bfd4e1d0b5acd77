"""Tables from numbers: the paper's Table 1 and Table 3 regenerated with the paper's bold and underlined
cells, ties, lower-is-better, every format, and the CLI's one-line errors."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from conftest import run_atax

from harness.errors import UserError
from harness.report.reference import REFERENCE_DIR, load_reference
from harness.report.render import render, to_latex, to_markdown
from harness.report.table import apply_options, ranking, table_from_json

REFERENCE = REFERENCE_DIR / "fu2024.json"
SHARED_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "fu2024_tables.json"
PAPER = json.loads(REFERENCE.read_text(encoding="utf-8"))


def marks_from_markdown(text: str) -> dict[tuple[str, str], str]:
    """(row, column) -> "best" / "second" / "" read back from the rendered markdown."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    out = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for column, cell in zip(header[1:], cells[1:], strict=True):
            out[(cells[0], column)] = ("best" if cell.startswith("**") else "second" if cell.startswith("<u>")
                                       else "")
    return out


def expected_table1() -> dict[tuple[str, str], str]:
    """The paper's marks, from its notes: DTM bold everywhere but RACE (Deita), second as listed."""
    notes = PAPER["notes"]
    expected = {}
    for column in PAPER["tables"]["table1_main"]["columns"]:
        best = "Deita" if column == "RACE" else "DTM (Ours)"
        expected[(best, column)] = "best"
        second = notes["table1_underlined_second_best"][column]
        for row in (["Vanilla", "EWC"] if "tie" in second else [second]):
            expected[(row, column)] = "second"
    return expected


def test_paper_table1_marks_are_regenerated() -> None:
    result = run_atax("table", "--from-json", str(REFERENCE), "--table", "table1_main",
                      "--exclude-from-ranking", "Llama-2-base")
    assert result.returncode == 0, result.stderr
    got = {key: mark for key, mark in marks_from_markdown(result.stdout).items() if mark}
    assert got == expected_table1()
    assert "| Llama-2-base | 13.57 |" in result.stdout  # the base row: shown, never marked
    assert "<u>46.93</u>" in result.stdout and result.stdout.count("<u>46.93</u>") == 2  # ARC-c tie: both


def test_paper_table3_marks_and_every_format() -> None:
    table = table_from_json(PAPER, "fu2024.json", "table3_instruction_following")
    marks = {(table.rows[i].name, key): mark for (i, key), mark in ranking(table).items()}
    expected = {("DTM (Ours)", "MT-bench"): "best", ("Uniform Soup", "MT-bench"): "second",
                ("Uniform Soup", "Vicuna-bench"): "best", ("DTM (Ours)", "Vicuna-bench"): "second"}
    assert marks == expected
    assert PAPER["notes"]["table3_underlined_second_best"] == {"MT-bench": "Uniform Soup", "Vicuna-bench": "DTM (Ours)"}
    latex = to_latex(table)
    assert r"\toprule" in latex and r"\midrule" in latex and r"\bottomrule" in latex
    assert r"\textbf{5.19}" in latex and r"\underline{5.04}" in latex and r"\textbf{7.48}" in latex
    html_text = render(table, "html")
    assert "<b>5.19</b>" in html_text and "<u>6.60</u>" in html_text
    rows = list(csv.DictReader(io.StringIO(render(table, "csv"))))
    dtm = next(r for r in rows if r["row"] == "DTM (Ours)")
    assert (dtm["MT-bench"], dtm["MT-bench mark"], dtm["Vicuna-bench mark"]) == ("5.19", "best", "second")


def test_ties_share_the_mark_and_second_is_the_next_distinct_value(tmp_path: Path) -> None:
    data = {"columns": ["A", "B"], "rows": [
        {"row": "x", "values": {"A": 10.0, "B": 1.0}},
        {"row": "y", "values": {"A": 10.0, "B": 2.0}},
        {"row": "z", "values": {"A": 9.0, "B": 2.004}},  # shows as 2.00: ties with y as displayed
        {"row": "w", "values": {"A": 8.0}},
    ]}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    result = run_atax("table", "--from-json", str(path))
    assert result.returncode == 0, result.stderr
    marks = marks_from_markdown(result.stdout)
    assert (marks[("x", "A")], marks[("y", "A")], marks[("z", "A")], marks[("w", "A")]) == ("best", "best", "second", "")
    assert (marks[("y", "B")], marks[("z", "B")], marks[("x", "B")]) == ("best", "best", "second")
    assert "| w | 8.00 | – |" in result.stdout  # a missing value is an en dash


def test_lower_is_better_and_exclusion(tmp_path: Path) -> None:
    data = {"columns": ["loss", "acc"], "rows": [
        {"row": "base", "values": {"loss": 0.1, "acc": 99.0}},
        {"row": "a", "values": {"loss": 1.0, "acc": 50.0}},
        {"row": "b", "values": {"loss": 2.0, "acc": 60.0}},
        {"row": "c", "values": {"loss": 3.0, "acc": 55.0}},
    ]}
    table = apply_options(table_from_json(data, "t"), exclude_from_ranking=["base"], lower_is_better=["loss"])
    marks = {(table.rows[i].name, key): mark for (i, key), mark in ranking(table).items()}
    assert marks == {("a", "loss"): "best", ("b", "loss"): "second", ("b", "acc"): "best", ("c", "acc"): "second"}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    result = run_atax("table", "--from-json", str(path), "--format", "latex", "--lower-is-better", "loss",
                      "--exclude-from-ranking", "base")
    assert result.returncode == 0, result.stderr
    assert r"a & \textbf{1.00} & 50.00" in result.stdout and r"base & 0.10 & 99.00" in result.stdout


def test_latex_and_markdown_escape_names() -> None:
    table = table_from_json({"columns": ["x_1"], "rows": [{"row": "a&b_c|d", "values": {"x_1": 1.0}}]}, "t")
    assert r"a\&b\_c|d" in to_latex(table) and r"x\_1" in to_latex(table)
    assert r"a&b_c\|d" in to_markdown(table)


@pytest.mark.parametrize("args,message", [
    (["--from-json", "/nonexistent/t.json"], "no file"),
    (["--from-json", "{bad}"], "not valid JSON"),
    (["--from-json", "{ok}", "--format", "docx"], "unknown format 'docx'"),
    (["--from-json", "{ok}", "--lower-is-better", "nope"], "unknown column 'nope'"),
    (["--from-json", "{ok}", "--exclude-from-ranking", "nobody"], "unknown row 'nobody'"),
    (["--from-json", "{shape}"], "expected"),
    (["--from-json", "{extra}"], "unknown column"),
    (["--from-json", str(REFERENCE)], "pick one with --table"),
    ([], "exactly one of"),
])
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    files = {"{bad}": "{not json", "{ok}": json.dumps({"columns": ["A"], "rows": [{"row": "r", "values": {"A": 1}}]}),
             "{shape}": json.dumps({"columns": "A"}),
             "{extra}": json.dumps({"columns": ["A"], "rows": [{"row": "r", "values": {"B": 1}}]})}
    resolved = []
    for arg in args:
        if arg in files:
            path = tmp_path / "input.json"
            path.write_text(files[arg])
            arg = str(path)
        resolved.append(arg)
    result = run_atax("table", *resolved)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr


def test_reference_file_carries_the_papers_numbers_and_citation() -> None:
    reference = load_reference("fu2024")
    assert "Disperse-Then-Merge" in reference.source and "2024" in reference.source
    assert reference.tables["table1_main"]["layout"] == "knowledge"
    if SHARED_REFERENCE.is_file():  # the project's shared transcription: same numbers, every table
        shared = json.loads(SHARED_REFERENCE.read_text(encoding="utf-8"))
        for name, table in shared["tables"].items():
            assert reference.tables[name]["columns"] == table["columns"]
            assert reference.tables[name]["rows"] == table["rows"]
    with pytest.raises(UserError, match="no file"):
        load_reference("nope2099")


def test_report_commands_do_not_import_heavy_modules() -> None:
    # `atax --help` imports every command module: ours must leave scipy, matplotlib, pandas for later.
    probe = ("import sys, harness.cli.table_cmd, harness.cli.compare_cmd, harness.cli.report_cmd; "
             "print(sorted(m for m in ('scipy', 'matplotlib', 'pandas', 'numpy', 'torch') if m in sys.modules))")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert re.search(r"\[\]", out), out


def test_suites_declare_their_paper_columns() -> None:
    """The paper layouts come from the registered suites' `paper_table`, not from names in the report."""
    from harness import registry
    from harness.report.table import Column, PaperTable, paper_layouts

    class ToySuite:
        paper_table = PaperTable("toy", "Toy table", (Column("toy_bench", "Toy", scale=100),), position=2)

    registry.suites.register("toy_suite_for_test", ToySuite)
    try:
        layouts = paper_layouts()
    finally:
        registry.suites.unregister("toy_suite_for_test")
    assert list(layouts) == ["knowledge", "toy", "instruction"]
    assert layouts["toy"] == ("Toy table", (Column("toy_bench", "Toy", scale=100),))
    assert [c.key for c in layouts["instruction"][1]] == ["mt_bench", "vicuna_bench"]
    assert "toy" not in paper_layouts()


def test_a_column_where_every_row_ties_gets_no_mark() -> None:
    data = {"columns": ["GSM8K", "ARC-c"],
            "rows": [{"row": "a", "values": {"GSM8K": 0.0, "ARC-c": 50.0}},
                     {"row": "b", "values": {"GSM8K": 0.001, "ARC-c": 50.0}},
                     {"row": "c", "values": {"GSM8K": 0.0, "ARC-c": 40.0}}]}
    table = table_from_json(data, "ties.json")
    marks = {(table.rows[i].name, key): mark for (i, key), mark in ranking(table).items()}
    assert marks == {("a", "ARC-c"): "best", ("b", "ARC-c"): "best", ("c", "ARC-c"): "second"}
