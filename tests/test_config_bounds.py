"""Hostile experiment files: alias bombs, deep nesting, out-of-range and wrongly typed numbers,
unsafe names, a results_dir that is a file, and options that would size work beyond the data.
Each is one line `FILE:LINE: field: what is wrong` (exit 2 through the CLI), before any work."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from conftest import run_atax

from harness.config import MethodEntry, load_experiment
from harness.config.checks import MAX_RUNS_PER_METHOD
from harness.config.yaml_source import MAX_DEPTH, MAX_NODES
from harness.errors import UserError

VALID = {
    "name": "t",
    "base_model": {"id": "builtin:tiny-llama"},
    "data": {"source": "builtin:toy-instructions", "max_samples": 50},
    "methods": [{"name": "vanilla"}],
    "seeds": [0],
}


def alias_bomb(levels: int) -> str:
    lines = ["name: t", 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def error_of(tmp_path: Path, content: dict | str) -> str:
    path = tmp_path / "exp.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
    with pytest.raises(UserError) as info:
        load_experiment(path)
    text = str(info.value)
    assert "\n" not in text
    prefix = f"{path}:"
    assert text.startswith(prefix), text
    return text.removeprefix(prefix)


def with_changes(**changes: object) -> dict:
    data = copy.deepcopy(VALID)
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return data


@pytest.mark.parametrize("levels", [4, 7, 9])
def test_an_alias_bomb_is_refused_at_the_alias_that_overflows(tmp_path: Path, levels: int) -> None:
    # Refused while parsing, before anything is built: the check counts each alias as the size of
    # its anchor instead of expanding it, so 9 levels (~3.9e8 values) cost what 4 do.
    message = error_of(tmp_path, alias_bomb(levels))
    line = 2 + next(i for i in range(levels + 1) if 10 ** (i + 1) > MAX_NODES)
    assert message == (f"{line}: the file expands to more than {MAX_NODES:,} values (YAML aliases repeat what "
                       "they point to); write the experiment out plainly")


def test_small_aliases_still_work(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(VALID) + "training: {batch_size: &b 4, micro_batch_size: *b}\n")
    assert load_experiment(path).training.micro_batch_size == 4


@pytest.mark.parametrize("opening,closing", [("[", "]"), ("{a: ", "}")])
def test_ten_thousand_deep_nesting_is_one_line(tmp_path: Path, opening: str, closing: str) -> None:
    text = "name: t\nbase_model: " + opening * 10_000 + "1" + closing * 10_000 + "\n"
    assert error_of(tmp_path, text) == f"2: nested deeper than {MAX_DEPTH} levels; an experiment file needs a handful"


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    assert error_of(tmp_path, "name: t\nseeds: &s [1, *s]\n") == (
        "2: alias *s refers to a value that contains it; write the value out")


def test_a_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("name: t\n" + "# padding\n" * 500_000)
    with pytest.raises(UserError, match=r"big.yaml: 4.8 MB is too large for an experiment file"):
        load_experiment(path)


BAD_VALUES = [
    ("bool for int", with_changes(training__batch_size=True), "training.batch_size: must be an integer (got True)"),
    ("float for int", with_changes(training__max_seq_len=1e20), "training.max_seq_len: must be an integer (got 1e+20)"),
    ("string for int", with_changes(training__max_steps="1e20"), "training.max_steps: must be an integer (got '1e20')"),
    ("seq len too large", with_changes(training__max_seq_len=10**7), "training.max_seq_len: must be <= 1048576 "
                                                                     "(got 10000000)"),
    ("negative seed", with_changes(seeds=[-1, 3]), "seeds[0]: must be >= 0 (got -1)"),
    ("seed past 2**32", with_changes(seeds=[2**32]), "seeds[0]: must be <= 4294967295 (got 4294967296)"),
    ("seed past 64 bits", with_changes(seeds=[1, 99999999999999999999999]),
     "seeds[1]: 99999999999999999999999 is out of range (more than 64 bits)"),
    ("bool seed", with_changes(seeds=[True]), "seeds[0]: must be an integer (got True)"),
    ("inf lr", with_changes(training__optimizer__lr=float("inf")), "training.optimizer.lr: must be a finite number "
                                                                   "(got inf)"),
    ("nan lr", with_changes(training__optimizer__lr=float("nan")), "training.optimizer.lr: must be a finite number "
                                                                   "(got nan)"),
    ("-inf anywhere", with_changes(methods=[{"name": "l2", "options": {"lambda": float("-inf")}}]),
     "methods[0].options.lambda: must be a finite number (got -inf)"),
    ("lr absurd", with_changes(training__optimizer__lr=1000.0), "training.optimizer.lr: must be <= 10 (got 1000.0)"),
    ("bool for float", with_changes(training__epochs=True), "training.epochs: must be a number (got True)"),
    ("bool for a flag is fine but 1 is not", with_changes(training__gradient_checkpointing=1),
     "training.gradient_checkpointing: must be true or false (got 1)"),
    ("path traversal name", with_changes(name="../../../../tmp/x"),
     "name: '../../../../tmp/x' is not a safe name: use 1-100 letters, digits and . _ - + = , @ starting with a "
     "letter or digit (it becomes a directory name)"),
    ("label with a slash", with_changes(methods=[{"name": "vanilla", "label": "a/b"}]),
     "methods[0].label: 'a/b' is not a safe name: use 1-100 letters, digits and . _ - + = , @ starting with a "
     "letter or digit (it becomes a directory name)"),
    ("dtm k of a billion", with_changes(methods=[{"name": "dtm", "options": {"k": 10**9}}]),
     "methods[0].options.k: must be <= 1024 (got 1000000000)"),
    ("dtm k above the samples", with_changes(methods=[{"name": "dtm", "options": {"k": 51}}]),
     "methods[0].options: plans 51 training runs (one per part of the data) but data.max_samples has at most "
     "50 samples; plan fewer runs or use more data"),
    ("dtm k above a sweep point", with_changes(methods=[{"name": "dtm", "options": {"k": 8}}],
                                               sweep={"max_samples": [5, 50]}),
     "methods[0].options: plans 8 training runs (one per part of the data) but data.max_samples with sweep point 5 "
     "has at most 5 samples; plan fewer runs or use more data"),
    ("plug-in bool for int", with_changes(methods=[{"name": "dtm", "options": {"k": True}}]),
     "methods[0].options.k: must be an integer (got True)"),
    ("runs above the absolute cap", with_changes(
        data={"source": "builtin:toy-instructions"},
        methods=[{"name": "data_order_merge", "options": {"k": MAX_RUNS_PER_METHOD + 1}}]),
     None),
]


@pytest.mark.parametrize("case,content,message", BAD_VALUES, ids=[c[0] for c in BAD_VALUES])
def test_bad_values_are_one_line_naming_the_field(tmp_path: Path, case: str, content: dict, message: str | None) -> None:
    text = error_of(tmp_path, content)
    line, _, rest = text.partition(": ")
    assert line.isdigit(), text
    if message is None:  # the plug-in's own bound or the absolute cap, whichever it meets first
        assert rest.startswith("methods[0].options"), text
        assert f"{MAX_RUNS_PER_METHOD + 1}" in rest.replace(",", ""), text
    else:
        assert rest == message


def test_results_dir_that_is_a_file_or_inside_one(tmp_path: Path) -> None:
    afile = tmp_path / "results.txt"
    afile.write_text("x")
    assert error_of(tmp_path, with_changes(results_dir=str(afile))).endswith(
        f"results_dir: '{afile}' is a file; give a directory (created if missing)")
    assert error_of(tmp_path, with_changes(results_dir="results.txt/sub")).endswith(
        f"results_dir: '{afile / 'sub'}' is inside the file '{afile}'; give a directory (created if missing)")


def test_max_seq_len_beyond_a_local_models_context(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text('{"max_position_embeddings": 512}')
    message = error_of(tmp_path, with_changes(base_model={"id": "./model"}, training__max_seq_len=1024))
    assert message.endswith("training.max_seq_len: 1024 is more than the model's context (512 tokens); lower it")


def test_k_against_a_local_jsonl_is_counted(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"instruction": "a", "output": "b"}\n' * 3)
    message = error_of(tmp_path, with_changes(data={"source": "d.jsonl"},
                                              methods=[{"name": "dtm", "options": {"k": 4}}]))
    assert message.endswith("plans 4 training runs (one per part of the data) but 'd.jsonl' has at most 3 samples; "
                            "plan fewer runs or use more data")


def test_a_sweep_larger_than_a_local_jsonl_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"instruction": "a", "output": "b"}\n' * 10)
    message = error_of(tmp_path, with_changes(data={"source": "d.jsonl"}, sweep={"max_samples": [5, 20]}))
    assert message.endswith("sweep.max_samples: 20 is more than the 10 samples 'd.jsonl' has; lower it")


def test_dry_run_refuses_a_huge_plan_before_listing(tmp_path: Path) -> None:
    from harness.pipeline.dryrun import dry_run

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(VALID))
    # An Experiment built in code skips load_experiment's checks; the dry run must still refuse.
    entry = MethodEntry(name="data_order_merge", options={"k": 10**9})
    experiment = load_experiment(path).model_copy(update={"methods": [entry]})
    with pytest.raises(UserError, match=r"^methods: data_order_merge plans 1,000,000,000 training runs; at most 1,024"):
        dry_run(experiment, path, tmp_path / "results")
    experiment = experiment.model_copy(update={"methods": [MethodEntry(name="dtm", options={"k": 10**9})]})
    with pytest.raises(UserError, match=r"^dtm.options.k: must be <= 1024 \(got 1000000000\)$"):
        dry_run(experiment, path, tmp_path / "results")


def test_dtm_plan_refuses_k_above_the_samples_before_dispersal(tmp_path: Path) -> None:
    from dtm_method.method import DTM, DTMOptions
    from harness.method import PlanContext

    method = DTM(DTMOptions(k=5, dispersal="kmeans"))
    with pytest.raises(UserError, match=r"^k: 5 clusters for 3 samples of data.jsonl; give k at most"):
        method.plan([object()] * 3, PlanContext(seed=0, workdir=tmp_path, data_source="data.jsonl"))
    assert not (tmp_path / "assignments.jsonl").exists()


def test_cli_refuses_hostile_files_in_one_line(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb(7))
    huge_k = tmp_path / "k.yaml"
    huge_k.write_text(yaml.safe_dump(with_changes(methods=[{"name": "dtm", "options": {"k": 10**9}}])))
    for args in (("config", "check", str(bomb)), ("run", str(huge_k), "--dry-run", "--results", str(tmp_path / "r"))):
        result = run_atax(*args, timeout=60)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith(f"error: {args[2] if args[0] == 'config' else huge_k}:")
    assert not (tmp_path / "r").exists()
