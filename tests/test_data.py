"""Instruction-data loading: formats, first-turn extraction, dropped rows, subsets, and one-line
errors that name the file and the row."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import run_atax

from harness.config import DataConfig
from harness.data import InstructionRecord, load_instruction_data, select_subset
from harness.errors import UserError


def load(path, **options):
    return load_instruction_data(DataConfig(source=str(path), **options))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_alpaca_rows_and_dropped_empty_rows(tmp_path):
    data = load(write_jsonl(tmp_path / "d.jsonl", [
        {"instruction": "Add 2 and 3.", "input": "", "output": "5"},
        {"instruction": "Name a colour.", "output": "Blue."},  # input may be absent
        {"instruction": "  ", "input": "", "output": "x"},  # empty instruction: dropped
        {"instruction": "Say nothing.", "input": "", "output": ""},  # empty response: dropped
    ]))
    assert data.records == [InstructionRecord("Add 2 and 3.", "", "5"), InstructionRecord("Name a colour.", "", "Blue.")]
    assert (data.n_rows, data.n_dropped, data.format) == (4, 2, "alpaca")
    assert len(data.fingerprint) == 64


def test_messages_keep_the_first_turn_after_a_system_turn(tmp_path):
    data = load(write_jsonl(tmp_path / "tulu.jsonl", [
        {"dataset": "x", "messages": [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."},
                                      {"role": "user", "content": "More?"}, {"role": "assistant", "content": "No."}]},
        {"messages": [{"role": "assistant", "content": "I start."}, {"role": "user", "content": "Odd."}]},
    ]))
    assert data.records == [InstructionRecord("Hi?", "", "Hello.")]
    assert data.n_dropped == 1 and data.format == "messages"


def test_parquet_and_json_array(tmp_path):
    import pandas as pd

    rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(5)]
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    (tmp_path / "d.json").write_text(json.dumps(rows, indent=2))
    assert load(tmp_path / "d.parquet").records == load(tmp_path / "d.json").records
    assert len(load(tmp_path / "d.json").records) == 5


def test_subsets_are_nested_and_seeded():
    items = list(range(100))
    small, large = select_subset(items, 0.25, None, 3), select_subset(items, 0.5, None, 3)
    assert len(small) == 25 and len(large) == 50 and set(small) <= set(large)
    assert small == sorted(small)  # file order kept
    assert select_subset(items, 0.25, None, 4) != small
    assert len(select_subset(items, 1.0, 10, 0)) == 10


@pytest.mark.parametrize("content,message", [
    (b'{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": \n',
     "{path}: line 2 is not valid JSON (Expecting value at column 32)"),
    (b'{"instruction": "a", "output": "b"}\n{"instruction": "caf\xe9", "output": "b"}\n',
     "{path}: line 2 is not UTF-8 (byte 21); re-encode the file as UTF-8"),
    (b'{"prompt": "a", "completion": "b"}\n',
     "{path}: line 1 has keys (prompt, completion); expected Alpaca (instruction, input, output), chat (messages), "
     "ShareGPT (conversations) or Self-Instruct (instruction, instances); set data.format if it is one of them"),
    (b'{"instruction": "", "output": ""}\n{"instruction": "x", "output": " "}\n',
     "{path}: all 2 rows have an empty instruction or response; nothing to train on"),
    (b'{"instruction": "a", "output": "b"}\n[1, 2]\n', "{path}: line 2 is not a JSON object"),
    (b'{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": 7}\n',
     "{path}: line 2: 'output' must be a string, not int (format alpaca)"),
    (b'{"instruction": "a", "output": "b"}\n{"instruction": "c", "input": "d"}\n',
     "{path}: line 2: an Alpaca row needs 'instruction' and 'output' (format alpaca)"),
    (b"\n\n", "{path}: no rows; give a file with instruction data"),
])
def test_bad_data_names_file_and_row(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserError) as info:
        load(path)
    assert str(info.value) == message.format(path=path)


def test_bad_json_array_names_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]\n')
    with pytest.raises(UserError, match=r"bad.json: not valid JSON at line 3 column 23 \(Expecting ',' delimiter\)"):
        load(path)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="nope.jsonl: file not found"):
        load(tmp_path / "nope.jsonl")


def test_hub_dataset_offline_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(UserError) as info:
        load_instruction_data(DataConfig(source="nobody-here/no-such-dataset-xyz"))
    text = str(info.value)
    assert text.startswith("data.source: cannot load hub dataset 'nobody-here/no-such-dataset-xyz' split 'train' (")
    assert text.endswith("download it on a connected machine or give a local file") and "\n" not in text


def test_cli_train_on_bad_data_exits_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"instruction": "a", "output": "b"}\nnot json\n')
    exp = {"name": "t", "base_model": {"id": "builtin:tiny-llama"}, "data": {"source": "bad.jsonl"},
           "methods": ["vanilla"]}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    result = run_atax("train", "--config", str(tmp_path / "exp.yaml"), "--method", "vanilla", "--quiet")
    assert result.returncode == 2
    assert result.stderr == f"error: {bad}: line 2 is not valid JSON (Expecting value at column 1)\n"


@pytest.mark.realdata
@pytest.mark.parametrize("name,fmt,n_min", [
    ("alpaca_data_1k.json", "alpaca", 990),
    ("code_alpaca_2k.json", "alpaca", 2000),
    ("fastchat_dummy_conversation.json", "conversations", 400),
    ("self_instruct_seed_tasks.jsonl", "instances", 175),
    ("self_instruct_user_oriented_instructions.jsonl", "instances", 250),
])
def test_real_instruction_samples(shared_data, name, fmt, n_min):
    data = load(shared_data / "instructions" / name)
    assert data.format == fmt
    assert len(data.records) >= n_min
    assert all(r.instruction.strip() and r.output.strip() for r in data.records)
    assert data.n_rows == len(data.records) + data.n_dropped


@pytest.mark.realdata
def test_real_sharegpt_first_turn(shared_data):
    data = load(shared_data / "instructions" / "fastchat_dummy_conversation.json")
    first = data.records[0]
    assert first.instruction == "Who are you?"
    assert first.output.startswith("I am Vicuna, a language model trained by researchers")
