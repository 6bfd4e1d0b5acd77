"""The typed manifest (harness/manifest.py) and the report's provenance built on it: each row described
by its own checkpoint, sizes as the method saw them, one form of model name, readable options."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import UserError
from harness.manifest import parse_manifest
from harness.report.provenance import data_size, format_options, row_provenance
from harness.stats.joins import primary_runs
from harness.store import EvalRun, ItemRecord, ResultsStore, Score

BASE = {"id": "builtin:tiny-llama", "revision": None}


def run_manifest(key: str, method: str, fingerprint: str, n: int, options: dict | None = None) -> dict:
    return {"kind": "lora", "run_key": key, "base_model": BASE, "training": {"template": "alpaca"},
            "data": {"fingerprint": fingerprint, "n_records": n, "n_instruction_records": n},
            "code_version": {"atax": "0.1.0", "engine": 3},
            "provenance": {"method": method, "method_name": method, "options": options or {}, "seed": 0,
                           "data": "builtin:toy-instructions"}}


def merged_manifest(key: str, method: str, op: str, inputs: list[str], options: dict) -> dict:
    return {"kind": "dense", "run_key": key, "base_model": BASE,
            "merge": {"op": op, "inputs": [{"run_key": k, "path": f"/runs/{k}"} for k in inputs], "seed": 0},
            "provenance": {"method": method, "options": options}}


def test_parse_reads_every_section() -> None:
    m = parse_manifest({**merged_manifest("m", "dtm", "ties", ["a", "b"], {"k": 2}), "variant": "v1",
                        "base_model": {"id": "x/y", "revision": "main", "gguf": {"sha256": "ab"}}}, "here")
    assert (m.kind, m.run_key, m.variant, m.base_model.name) == ("dense", "m", "v1", "x/y@main")
    assert m.base_model.details == {"gguf": {"sha256": "ab"}}
    assert m.merge is not None and (m.merge.op, [i.run_key for i in m.merge.inputs]) == ("ties", ["a", "b"])
    assert m.parents == ["a", "b"] and m.training is None
    assert m.provenance.registered_method == "dtm" and m.provenance.options == {"k": 2}
    run = parse_manifest(run_manifest("r", "vanilla", "f1", 96), "here")
    assert run.training is not None and run.training.template == "alpaca"
    assert run.training.data.instruction_examples == 96
    ensemble = parse_manifest({"kind": "ensemble", "ensemble": {"weights": [0.5, 0.5],
                                                                "members": [{"run_key": "a"}, {"run_key": "b"}]}},
                              "here")
    assert ensemble.merge is not None and ensemble.merge.op == "ensemble" and ensemble.merge.weights == (0.5, 0.5)
    scaled = parse_manifest({"kind": "lora", "scaled_from": {"run_key": "v", "alpha": 0.5}}, "here")
    assert scaled.parents == ["v"] and scaled.scaled_from is not None and scaled.scaled_from.alpha == 0.5


@pytest.mark.parametrize("raw, message", [
    ([1, 2], "here: the manifest must be a JSON object"),
    ({"base_model": "llama"}, "here: base_model must be an object (got 'llama'); re-create the checkpoint"),
    ({"merge": {"op": "ties", "inputs": "a,b"}}, "here: merge.inputs must be a list"),
    ({"merge": {"op": "ties", "weights": [0.5, "x"]}}, "here: merge.weights must be a list of numbers"),
    ({"provenance": {"seed": "zero"}}, "here: provenance.seed must be an integer"),
    ({"data": {"n_records": 1.5}, "training": {}}, "here: data.n_records must be an integer"),
    ({"ensemble": {"members": [3]}}, "here: ensemble.members[0] must be an object"),
])
def test_malformed_manifests_are_one_line_naming_the_field(raw: object, message: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_manifest(raw, "here")
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_format_options_is_readable() -> None:
    options = {"k": 4, "dispersal": "random", "weights": None, "merge": {"name": "ties", "params": {"density": 0.2}},
               "alphas": [0.25, 1.0], "same_init": True, "empty": {}}
    assert format_options(options) == ("alphas=[0.25, 1]; dispersal=random; k=4; merge.name=ties; "
                                        "merge.params.density=0.2; same_init=true")


def _record(store: ResultsStore, key: str, row: str, benchmark: str = "arc_challenge", meta: dict | None = None,
            target: dict | None = None) -> None:
    run_meta = {"primary_metric": "acc", "backend": "hf", **(meta or {})}
    if target:
        run_meta["target"] = target
    store.record_eval(EvalRun(key, "knowledge", benchmark, "exp", row, 0, run_meta),
                      [Score("acc", 0.5, None, 2, {"primary": True})],
                      [ItemRecord("q1", "h1", None, None, 1.0), ItemRecord("q2", "h2", None, None, 0.0)])


def test_row_provenance_comes_from_each_rows_own_checkpoint(tmp_path: Path) -> None:
    """uniform_soup trained a run first; data_order_merge reuses it (same content, same key) and merges it
    with one more run on the same 96 examples: its row says data_order_merge and 96 examples, not 192."""
    with ResultsStore.open(tmp_path) as store:
        store.add_experiment("exp", "{}")
        store.add_checkpoint("run-0", "/runs/run-0", "lora", "h0", run_manifest("run-0", "uniform_soup", "f", 96,
                                                                                  {"k": 2}))
        store.add_checkpoint("run-1", "/runs/run-1", "lora", "h1", run_manifest("run-1", "data_order_merge", "f", 96))
        store.add_checkpoint("dom", "/ckpt/dom", "dense", "h2", merged_manifest(
            "dom", "data_order_merge", "parameter_selection", ["run-0", "run-1"],
            {"k": 2, "merge": {"name": "parameter_selection", "params": {"resample": True}}}))
        store.add_checkpoint("c0", "/runs/c0", "lora", "h3", run_manifest("c0", "dtm", "f-c0", 48))
        store.add_checkpoint("c1", "/runs/c1", "lora", "h4", run_manifest("c1", "dtm", "f-c1", 48))
        store.add_checkpoint("dtm", "/ckpt/dtm", "lora", "h5", merged_manifest("dtm", "dtm", "average", ["c0", "c1"],
                                                                               {"k": 2}))
        store.add_checkpoint("builtin:tiny-llama", "/cache/tiny", "model", "h6", {})
        _record(store, "dom", "data_order_merge")
        _record(store, "dtm", "dtm")
        _record(store, "builtin:tiny-llama", "base", target={"ref": "builtin:tiny-llama", "model": "/cache/x/tiny"})
        _record(store, "dtm", "dtm", "humaneval", meta={"sandbox_level": "namespaces"})
        by_row = {}
        for run in primary_runs(store, experiment="exp"):
            by_row.setdefault(run.row, []).append(run)
        dom, dtm, base = (row_provenance(store, by_row[r]) for r in ("data_order_merge", "dtm", "base"))
        assert (data_size(store, "dom"), data_size(store, "dtm")) == (96, 96)
    assert dom["method"] == "data_order_merge, merge parameter_selection"
    assert dom["data"] == "builtin:toy-instructions (96 examples)"
    assert dom["options"] == "k=2; merge.name=parameter_selection; merge.params.resample=true"
    assert dtm["data"] == "builtin:toy-instructions (96 examples)"  # two disjoint clusters of 48
    assert dtm["code sandbox"] == "humaneval: namespaces" and dom["code sandbox"] == "–"
    assert dom["base model"] == dtm["base model"] == base["base model"] == "builtin:tiny-llama"
    assert dom["code version"] == "atax 0.1.0, engine 3"


def test_a_gguf_base_is_named_with_its_file_quantisation_and_hash(tmp_path: Path) -> None:
    facts = {"file": "smol.gguf", "sha256": "abcdef0123456789", "quantization": "MOSTLY_Q8_0"}
    base = {"id": "/models/smol.gguf", "revision": None}
    with ResultsStore.open(tmp_path) as store:
        store.add_experiment("exp", "{}")
        store.add_checkpoint("/models/smol.gguf", "/models/smol.gguf", "model", "h", {"gguf": facts})
        store.add_checkpoint("run", "/runs/run", "lora", "h1", {**run_manifest("run", "vanilla", "f", 8),
                                                                  "base_model": base})
        _record(store, "/models/smol.gguf", "base", target={"ref": "/models/smol.gguf"})
        _record(store, "run", "vanilla")
        rows = {}
        for run in primary_runs(store, experiment="exp"):
            rows.setdefault(run.row, []).append(run)
        named = {row: row_provenance(store, runs)["base model"] for row, runs in rows.items()}
    expected = "/models/smol.gguf (GGUF smol.gguf MOSTLY_Q8_0, sha256 abcdef012345)"
    assert named == {"base": expected, "vanilla": expected}


SAVE_ADAPTER = """
import sys, torch
from peft import LoraConfig, get_peft_model
from harness.modeling import load_causal_lm
from harness.train.lora import LoraAdapter
model = load_causal_lm("builtin:tiny-llama", None, "float32", torch.device("cpu"))
modules = ["q_proj", "v_proj", "up_proj", "down_proj", "gate_proj"]
torch.manual_seed(0)
LoraAdapter(None, None).save(get_peft_model(model, LoraConfig(r=2, target_modules=modules)), sys.argv[1])
"""


def test_equal_adapters_are_equal_files_whatever_the_string_hash_seed(tmp_path: Path) -> None:
    # peft writes its target-module set in the process's hash order: equal training runs once hashed
    # differently, so their evaluations missed lm-eval's response cache
    import os
    import subprocess
    import sys

    from harness.checkpoint import content_hash

    outs = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", SAVE_ADAPTER, str(out)], check=True, env=env,
                       capture_output=True)
        outs.append(out)
    configs = {(out / "adapter_config.json").read_bytes() for out in outs}
    assert len(configs) == 1
    assert '"down_proj",' in configs.pop().decode()  # sorted: down, gate, q, up, v
    assert len({content_hash(out) for out in outs}) == 1
