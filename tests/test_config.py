"""Experiment files: valid ones load with the paper's defaults; each malformed one gives one
line naming the exact YAML path of the bad field (and its line), exit 2 through the CLI."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from conftest import PLUGIN_DIST, run_atax

from harness import registry
from harness.builtin import builtin_names
from harness.config import load_experiment
from harness.errors import UserError

VALID = {
    "name": "t",
    "base_model": {"id": "builtin:tiny-llama"},
    "data": {"source": "builtin:toy-instructions"},
    "methods": [{"name": "vanilla"}],
    "seeds": [0],
}


@pytest.fixture
def toy_soup():
    """The dummy plug-in's method, registered in-process for the duration of a test."""
    registry.methods.register("toy_soup", "atax_dummy_plugin:ToySoup")
    import sys

    sys.path.insert(0, str(PLUGIN_DIST))
    yield
    sys.path.remove(str(PLUGIN_DIST))
    registry.methods.unregister("toy_soup")


def write(tmp_path: Path, data: dict | str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def mutated(**changes) -> dict:
    data = copy.deepcopy(VALID)
    for dotted, value in changes.items():
        keys = dotted.split("__")
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        if value is DELETE:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return data


DELETE = object()

# (case id, experiment content, exact message after "FILE:LINE: ")
MALFORMED = [
    ("unknown top-level key", mutated(epochs=3),
     "epochs: unknown key; allowed: name, base_model, data, training, methods, suites, seeds, backend, "
     "executor, results_dir, sweep"),
    ("unknown nested key", mutated(training__lr=0.1),
     "training.lr: unknown key; allowed: lora, optimizer, scheduler, batch_size, micro_batch_size, "
     "max_seq_len, epochs, max_steps, template, loss_on, batching, max_grad_norm, validation_fraction, "
     "eval_steps, gradient_checkpointing, save_steps, logging_steps"),
    ("wrong type", mutated(training__batch_size="sixteen"),
     "training.batch_size: must be an integer (got 'sixteen')"),
    ("missing base model", mutated(base_model=DELETE),
     "base_model: required; add it (`atax init` writes a complete example)"),
    ("missing base model id", mutated(base_model={"dtype": "float32"}),
     "base_model.id: required; add it (`atax init` writes a complete example)"),
    ("K < 1", mutated(methods=[{"name": "vanilla"}, {"name": "toy_soup", "options": {"k": 0}}]),
     "methods[1].options.k: must be >= 1 (got 0)"),
    ("negative lr", mutated(training__optimizer__lr=-0.001),
     "training.optimizer.lr: must be > 0 (got -0.001)"),
    ("unknown method", mutated(methods=[{"name": "sft"}]),
     "methods[0].name: unknown method 'sft'; known: "),
    ("dropout out of range", mutated(training__lora__dropout=1.5),
     "training.lora.dropout: must be < 1 (got 1.5)"),
    ("no methods", mutated(methods=[]), "methods: must not be empty"),
    ("duplicate seed", mutated(seeds=[0, 1, 1]), "seeds: seed 1 is listed twice"),
    ("bad template", mutated(training__template="vicuna"),
     "training.template: must be one of 'alpaca' or 'chat' (got 'vicuna')"),
    ("micro batch does not divide", mutated(training__micro_batch_size=5),
     "training.micro_batch_size: must divide batch_size (16); got 5"),
    ("duplicate method row", mutated(methods=[{"name": "vanilla"}, {"name": "vanilla"}]),
     "methods[1].label: 'vanilla' appears twice; give each a distinct 'label'"),
    ("option a method does not take", mutated(methods=[{"name": "vanilla", "options": {"k": 2}}]),
     "methods[0].options.k: unknown key; this takes no options"),
    ("empty target modules", mutated(training__lora__target_modules=[]),
     "training.lora.target_modules: must not be empty"),
    ("beta out of range", mutated(training__optimizer__betas=[0.9, 1.5]),
     "training.optimizer.betas: each beta must be in [0, 1)"),
    ("one beta", mutated(training__optimizer__betas=[0.9]),
     "training.optimizer.betas[1]: required; add it (`atax init` writes a complete example)"),
    ("unknown builtin", mutated(base_model={"id": "builtin:huge-llama"}),
     f"base_model.id: unknown built-in 'builtin:huge-llama'; known: {', '.join(builtin_names())}"),
    ("unknown suite", mutated(suites=["knowledge_v9"]),
     "suites[0].name: unknown suite 'knowledge_v9'; known: "),
    ("data fraction zero", mutated(data__data_fraction=0), "data.data_fraction: must be > 0 (got 0)"),
    ("seeds not a list", mutated(seeds="0"), "seeds: must be a list (got '0')"),
    ("lora rank zero", mutated(training__lora__r=0), "training.lora.r: must be >= 1 (got 0)"),
    ("unknown executor", mutated(executor={"name": "kubernetes"}),
     "executor.name: unknown executor 'kubernetes'; known: local, ray, slurm"),
    ("method entry not a mapping", mutated(methods=[3]), "methods[0]: must be a mapping (got 3)"),
]


@pytest.mark.parametrize("case,data,message", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_experiment_names_the_field(tmp_path, toy_soup, case, data, message):
    path = write(tmp_path, data)
    with pytest.raises(UserError) as info:
        load_experiment(path)
    text = str(info.value)
    assert "\n" not in text
    prefix, _, rest = text.partition(": ")
    assert prefix.startswith(f"{path}:") and prefix.split(":")[-1].isdigit(), text
    if case in ("unknown suite", "unknown method"):
        assert rest.startswith(message), text
        assert case != "unknown method" or ("toy_soup" in rest and "vanilla" in rest), text
    else:
        assert rest == message


def test_missing_data_file(tmp_path):
    text = _error(tmp_path, mutated(data={"source": "data/nope.jsonl"}))
    assert text == (f"{tmp_path / 'exp.yaml'}:5: data.source: file '{tmp_path / 'data/nope.jsonl'}' not found; "
                    "give a local JSON/JSONL/parquet file, a hub dataset id (org/name) or builtin:toy-instructions")


def test_wrong_data_file_type(tmp_path):
    (tmp_path / "d.csv").write_text("a,b\n")
    assert _error(tmp_path, mutated(data={"source": "d.csv"})).endswith(
        f"data.source: unsupported file type '.csv' for '{tmp_path / 'd.csv'}'; use .json, .jsonl or .parquet")


def test_model_dir_without_config(tmp_path):
    (tmp_path / "model").mkdir()
    assert _error(tmp_path, mutated(base_model={"id": "./model"})).endswith(
        f"base_model.id: '{tmp_path / 'model'}' has no config.json; give a Hugging Face model directory")


def test_error_points_at_the_line(tmp_path):
    text = "name: t\nbase_model:\n  id: builtin:tiny-llama\ndata:\n  source: builtin:toy-instructions\n" \
           "training:\n  optimizer:\n    lr: -1\nmethods: [vanilla]\n"
    assert _error(tmp_path, text) == f"{tmp_path / 'exp.yaml'}:8: training.optimizer.lr: must be > 0 (got -1)"


@pytest.mark.parametrize("text,message", [
    ("name: t\nbase_model: [unclosed\n", "invalid YAML"),
    ("", "the file is empty"),
    ("- name: t\n", "the top level must be a mapping"),
    ("name: t\nname: u\n", "name: duplicate key; keep one"),
    ("name: t\ntraining:\n  epochs: 1\n  epochs: 2\n", "training.epochs: duplicate key; keep one"),
])
def test_unparseable_files(tmp_path, text, message):
    assert message in _error(tmp_path, text)


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    assert _error(tmp_path, "name: t\nbase_model: [unclosed\n").startswith(f"{tmp_path / 'exp.yaml'}:3:1: invalid YAML")


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(UserError, match="file not found; `atax init --out"):
        load_experiment(tmp_path / "none.yaml")
    (tmp_path / "latin.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(UserError, match=r"latin.yaml: not UTF-8 text \(byte 9\)"):
        load_experiment(tmp_path / "latin.yaml")


def test_valid_experiment_has_the_paper_defaults(tmp_path):
    exp = load_experiment(write(tmp_path, VALID))
    t = exp.training
    assert (t.lora.r, t.lora.alpha, t.lora.dropout) == (16, 16, 0.05)
    assert t.lora.target_modules == ["gate_proj", "up_proj", "down_proj"]
    assert (t.optimizer.lr, t.optimizer.betas, t.optimizer.weight_decay) == (3e-4, (0.9, 0.95), 0.0)
    assert (t.scheduler.name, t.scheduler.warmup_steps) == ("cosine", 100)
    assert (t.batch_size, t.max_seq_len, t.epochs, t.template, t.loss_on) == (16, 1024, 3, "alpaca", "response")
    assert exp.results_dir == tmp_path / "atax-results"


def test_relative_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    exp = load_experiment(write(tmp_path, mutated(data={"source": "data/train.jsonl"}, results_dir="out")))
    assert exp.data.source == str(tmp_path / "data" / "train.jsonl")
    assert exp.results_dir == tmp_path / "out"


def test_hub_ids_are_accepted_without_network(tmp_path):
    exp = load_experiment(write(tmp_path, mutated(base_model={"id": "meta-llama/Llama-2-7b-hf"},
                                                  data={"source": "allenai/tulu-v2-sft-mixture"})))
    assert exp.base_model.id == "meta-llama/Llama-2-7b-hf"
    assert exp.data.source == "allenai/tulu-v2-sft-mixture"


def test_method_shorthand_and_labels(tmp_path, toy_soup):
    exp = load_experiment(write(tmp_path, mutated(methods=[
        "vanilla", {"name": "toy_soup", "label": "soup-k2"}, {"name": "toy_soup", "label": "soup-k4",
                                                              "options": {"k": 4}}])))
    assert [m.row_name for m in exp.methods] == ["vanilla", "soup-k2", "soup-k4"]


def test_cli_config_check_exit_codes(tmp_path):
    good = write(tmp_path, VALID, "good.yaml")
    ok = run_atax("config", "check", str(good))
    assert ok.returncode == 0, ok.stderr
    bad = write(tmp_path, mutated(training__optimizer__lr=-1), "bad.yaml")
    result = run_atax("config", "check", str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith("training.optimizer.lr: must be > 0 (got -1)")


def test_cli_plugin_option_error_through_entry_point(tmp_path):
    bad = write(tmp_path, mutated(methods=[{"name": "toy_soup", "options": {"k": 0}}]))
    result = run_atax("config", "check", str(bad), extra_pythonpath=PLUGIN_DIST)
    assert result.returncode == 2
    assert result.stderr.strip().endswith("methods[0].options.k: must be >= 1 (got 0)")


def _error(tmp_path: Path, data: dict | str) -> str:
    with pytest.raises(UserError) as info:
        load_experiment(write(tmp_path, data))
    return str(info.value)
