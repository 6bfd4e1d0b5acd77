"""The one JSONL reader behind answers, questions, judge prompts and benchmark-data checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import UserError
from harness.evaluate.backends.answers import read_answers
from harness.jsonl import jsonl_objects
from suites.judged.questions import load_questions


def test_objects_come_with_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a": 1}\n\n  \r\n{"b": "\xc3\xa9"}\r\n')
    assert list(jsonl_objects(path)) == [(1, {"a": 1}), (4, {"b": "é"})]


GOOD = b'{"benchmark": "gsm8k", "doc_id": 0, "completion": "The answer is 1."}\n'


@pytest.mark.parametrize(("content", "message"), [
    (GOOD + b'{"a": \xff}\n', "{path}:2: not UTF-8 (byte 7 of the line); re-encode the file as UTF-8"),
    (GOOD + b'{"a": }\n', "{path}:2: not valid JSON (Expecting value); write one JSON object per line"),
    (b'[1, 2]\n', "{path}:1: expected a JSON object with benchmark, doc_id, completion"),
])
def test_bad_lines_are_one_line_errors_naming_file_and_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "answers.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserError) as caught:
        read_answers(path, {"gsm8k_cot": "gsm8k"})
    assert str(caught.value) == message.format(path=path)


def test_a_question_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "question.jsonl"
    path.write_bytes(b'{"question_id": 1, "category": "writing", "turns": ["caf\xe9"]}\n')
    with pytest.raises(UserError, match=r"question.jsonl:1: not UTF-8 \(byte 57 of the line\)"):
        load_questions(str(path))


def test_an_unreadable_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read"):
        list(jsonl_objects(tmp_path))  # a directory
