"""The knowledge suite's parts on their own: its tables agree with the installed lm-eval, derived
task configs, pass@k, targets and the response-cache key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from knowledge_fixtures import write_fixture_data

from harness.errors import UserError
from harness.evaluate.target import EvalTarget, resolve_target
from suites.knowledge.benchmarks import BENCHMARKS, DATASETS, DEFAULT_BENCHMARKS
from suites.knowledge.suite import KnowledgeOptions


def test_tables_agree_with_the_installed_lm_eval() -> None:
    from suites.knowledge.derive import lm_eval_tasks_dir, stock_config

    tasks_dir = lm_eval_tasks_dir()
    for bench in BENCHMARKS.values():
        dataset = DATASETS[bench.dataset]
        if bench.subtask_stock:
            group = stock_config(bench.stock)
            assert group["group"] == bench.task
            names = sorted(p.stem for p in tasks_dir.glob(bench.subtask_stock.format("*")) if not p.stem.startswith("_"))
            assert names == sorted(Path(bench.subtask_stock.format(s)).stem for s in dataset.subsets)
            configs = [stock_config(bench.subtask_stock.format(s)) for s in dataset.subsets]
        else:
            configs = [stock_config(bench.stock)]
        for subset, config in zip(dataset.subsets or [None], configs, strict=True):
            assert config["dataset_path"] == dataset.hub, bench.name
            # A variant on other data of the same task (RACE-middle) names its hub config itself.
            expected = bench.hub_config or (subset if subset else dataset.config)
            assert (bench.hub_config or config.get("dataset_name")) == expected, bench.name
            assert dataset.config == expected or subset, bench.name
            eval_split = config.get("test_split") or config.get("validation_split")
            assert eval_split in dataset.splits, bench.name
            if bench.subtask_task:
                assert config["task"] == bench.subtask_task.format(subset)
            elif bench.hub_config:  # a data variant of a stock task, derived under its own name
                assert config["task"] != bench.task and config.get("dataset_name") != bench.hub_config
            elif not bench.overlay or bench.task == config["task"]:
                assert config["task"] == bench.task


def test_default_benchmarks_are_the_papers_nine() -> None:
    assert len(DEFAULT_BENCHMARKS) == 9
    assert KnowledgeOptions().benchmarks == list(DEFAULT_BENCHMARKS)
    assert KnowledgeOptions(benchmarks="gsm8k, mmlu").benchmarks == ["gsm8k", "mmlu"]


def test_derived_configs_include_lm_eval_and_override_only_data(tmp_path: Path) -> None:
    from suites.knowledge.data import sources_for
    from suites.knowledge.derive import OVERLAYS, lm_eval_tasks_dir, write_task_dir

    data = write_fixture_data(tmp_path / "data")
    benches = [BENCHMARKS[n] for n in ("arc_challenge", "mmlu", "humaneval")]
    sources, meta = sources_for(benches, data, allow_partial=False, log=lambda m: None)
    out = write_task_dir(sources, root=tmp_path / "tasks")
    assert write_task_dir(sources, root=tmp_path / "tasks") == out  # same content, same directory
    arc = yaml.safe_load((out / "arc_challenge.yaml").read_text())
    assert arc == {"include": str(lm_eval_tasks_dir() / "arc/arc_challenge.yaml"), "task": "arc_challenge",
                   "num_fewshot": 0, "dataset_path": "json", "dataset_name": None,
                   "dataset_kwargs": {"data_files": {"test": str(data.resolve() / "arc_challenge/test.jsonl")}},
                   # lm-eval's ARC names train and validation splits a 0-shot run never reads
                   "training_split": None, "validation_split": None}
    anatomy = yaml.safe_load((out / "mmlu_anatomy.yaml").read_text())
    assert anatomy["num_fewshot"] == 5 and set(anatomy["dataset_kwargs"]["data_files"]) == {"test", "dev"}
    group = yaml.safe_load((out / "mmlu.yaml").read_text())
    assert group["group"] == "mmlu" and len(group["task"]) == 57
    assert group["aggregate_metric_list"] == [{"metric": "acc", "weight_by_size": True}]
    humaneval = yaml.safe_load((out / "humaneval.yaml").read_text())
    assert humaneval["include"] == [str(lm_eval_tasks_dir() / "humaneval/humaneval.yaml"),
                                    str(OVERLAYS / "humaneval.yaml")]
    assert meta["mmlu"] == {"source": f"local {data.resolve() / 'mmlu'}"}


def test_partial_groups_are_refused_unless_allowed(tmp_path: Path) -> None:
    from suites.knowledge.data import sources_for

    data = write_fixture_data(tmp_path / "data")
    for subject in DATASETS["mmlu"].subsets[2:]:
        for f in (data / "mmlu" / subject).iterdir():
            f.unlink()
        (data / "mmlu" / subject).rmdir()
    with pytest.raises(UserError, match=r"55 of 57 mmlu subsets missing \(astronomy, business_ethics, "):
        sources_for([BENCHMARKS["mmlu"]], data, allow_partial=False, log=print)
    sources, meta = sources_for([BENCHMARKS["mmlu"]], data, allow_partial=True, log=print)
    assert sources[0].subtask_names() == ["mmlu_abstract_algebra", "mmlu_anatomy"]
    assert meta["mmlu"]["partial"] is True and meta["mmlu"]["subsets"] == ["abstract_algebra", "anatomy"]


def test_pass_at_k_in_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    from suites.knowledge.code_metric import SandboxCodeEval, _estimate, code_execution_scope, pass_at_k

    assert _estimate(5, 2, 1) == pytest.approx(0.4)
    assert _estimate(5, 2, 2) == pytest.approx(1 - 3 / 10)
    assert _estimate(3, 3, 2) == 1.0
    refs = ["assert f(2) == 4"]
    cands = [["def f(x):\n    return x * 2", "def f(x):\n    return x + 3", "def f(x):\n    while True: pass"]]
    monkeypatch.setenv("HF_ALLOW_CODE_EVAL", "1")  # not a permission: only the scope below is
    with pytest.raises(UserError, match="refusing to run model-written code"):
        pass_at_k(refs, cands, k=[1])
    with code_execution_scope():
        assert pass_at_k(refs, cands, k=[1, 2, 5]) == {"pass@1": pytest.approx(1 / 3),
                                                       "pass@2": pytest.approx(2 / 3)}
        assert pass_at_k(refs, ["def f(x):\n    return 4"]) == {"pass@1": 1.0}
        scores, _ = SandboxCodeEval().compute(references=["assert add(2, 3)==5"],
                                              predictions=[["def add(a,b): return a*b"]], k=[1])
    assert scores == {"pass@1": 0.0}
    with pytest.raises(UserError, match="refusing to run model-written code"):
        pass_at_k(refs, cands, k=[1])  # the scope ended with its block


def test_targets(tmp_path: Path) -> None:
    from harness.checkpoint import write_checkpoint

    tiny = resolve_target("builtin:tiny-llama")
    assert tiny.key == "builtin:tiny-llama" and tiny.model and Path(tiny.model, "config.json").is_file()
    hub = resolve_target("org/some-model")
    assert (hub.kind, hub.model, hub.key) == ("model", "org/some-model", "org/some-model")
    ckpt = write_checkpoint(tmp_path / "ck", {"kind": "lora", "run_key": "abc", "base_model": {"id": "builtin:tiny-llama"}},
                            lambda d: ((d / "adapter_config.json").write_text("{}"),  # an empty but valid adapter
                                       (d / "adapter_model.safetensors").write_bytes(b"\x02" + b"\0" * 7 + b"{}")))
    lora = resolve_target(str(ckpt.path))
    assert (lora.key, lora.kind, lora.adapter, lora.model) == ("abc", "lora", ckpt.path.resolve(), tiny.model)
    with pytest.raises(UserError, match="has no checkpoint.json and no config.json"):
        resolve_target(str(tmp_path))
    with pytest.raises(UserError, match="neither a directory nor a hub id"):
        resolve_target(str(tmp_path / "missing"))


def test_response_cache_key_follows_the_model_not_the_batch_size() -> None:
    from harness.evaluate.lmeval_lm import response_cache_path

    a = EvalTarget("a", "a", "model", "hash-a")
    b = EvalTarget("b", "b", "model", "hash-b")
    options = {"batch_size": 8, "dtype": "auto", "device": None, "max_length": None}
    assert response_cache_path(a, "hf", options) != response_cache_path(b, "hf", options)
    assert response_cache_path(a, "hf", options) == response_cache_path(a, "hf", {**options, "batch_size": 64})
    assert response_cache_path(a, "hf", options) != response_cache_path(a, "hf", {**options, "dtype": "float16"})


def test_response_cache_key_follows_the_backends_code_version(monkeypatch: pytest.MonkeyPatch) -> None:
    # a fixed engine must not replay the answers its earlier version cached
    from harness import registry
    from harness.evaluate.backends.hf import HFBackend
    from harness.evaluate.lmeval_lm import response_cache_path

    target = EvalTarget("a", "a", "model", "hash-a")
    options = {"dtype": "auto"}
    before = response_cache_path(target, "hf", options)
    assert registry.plugin_version("backend", "hf") == HFBackend.version
    monkeypatch.setattr(HFBackend, "version", HFBackend.version + "-next")
    assert response_cache_path(target, "hf", options) != before


def test_listing_the_suite_imports_neither_lm_eval_nor_torch() -> None:
    code = ("import sys\nfrom harness import registry\n"
            "rows = registry.suites.describe() + registry.backends.describe()\n"
            "print(sorted(m for m in ('torch', 'lm_eval', 'transformers') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.replace("'", '"')) == []


def test_experiment_files_validate_the_suite_and_backend_options(tmp_path: Path) -> None:
    from harness.cli.init import example_experiment_text
    from harness.config import load_experiment

    base = example_experiment_text().replace("suites: []", "suites:\n  - name: knowledge\n    options: {OPTIONS}")
    good = tmp_path / "good.yaml"
    good.write_text(base.replace("{OPTIONS}", "{benchmarks: [gsm8k, mmlu], limit: 2}")
                    + "backend:\n  name: hf\n  options: {batch_size: 4}\n")
    experiment = load_experiment(good)
    assert experiment.suites[0].options == {"benchmarks": ["gsm8k", "mmlu"], "limit": 2}
    bad = tmp_path / "bad.yaml"
    bad.write_text(base.replace("{OPTIONS}", "{benchmarks: [gsm8k, nope]}"))
    with pytest.raises(UserError, match=r"suites\[0\]\.options\.benchmarks.*unknown benchmark 'nope'"):
        load_experiment(bad)


@pytest.mark.parametrize(("primary", "message"), [
    ({"truthfulqa": "acc_norm"}, "primary_metrics: truthfulqa offers acc, not 'acc_norm'"),
    ({"mmlu": "acc"}, "primary_metrics: 'mmlu' is not among the benchmarks run (arc_challenge, truthfulqa)"),
])
def test_primary_metrics_names_an_offered_metric_of_a_benchmark_run(primary: dict, message: str) -> None:
    from pydantic import ValidationError

    assert KnowledgeOptions(benchmarks=["arc_challenge"], primary_metrics={"arc_challenge": "acc_norm"})
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        KnowledgeOptions(benchmarks=["arc_challenge", "truthfulqa"], primary_metrics=primary)


def test_lm_eval_templates_compile_once_and_render_as_before() -> None:
    from lm_eval import utils

    from suites.knowledge import template_cache

    template_cache.install()
    template_cache.install()  # a second install keeps the first cache
    template = "Question: {{question}}\nChoices: {{ choices.text | join(', ') }}\nAnswer:"
    docs = [{"question": "Why?", "choices": {"text": ["a", "b"]}},
            {"question": "How?", "choices": {"text": ["c"]}}]
    before = utils.apply_template.compiled.cache_info()
    rendered = [utils.apply_template(template, doc) for doc in docs]
    after = utils.apply_template.compiled.cache_info()
    assert rendered == [utils.env.from_string(template).render(**doc) for doc in docs]
    assert rendered[0] == "Question: Why?\nChoices: a, b\nAnswer:"
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
