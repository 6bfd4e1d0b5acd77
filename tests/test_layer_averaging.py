"""layer_averaging (HMA-style, Lin et al. 2024): per-block α applied exactly, the search reads held-out
instruction records and pre-training text only (never a benchmark), the selection rules, the manifest."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import yaml
from model_fixtures import logits, peft_logits

from baselines.layer_averaging.blocks import plan_blocks, write_block_scaled
from baselines.layer_averaging.holdout import split_held_out
from baselines.layer_averaging.search import Candidate, ProxyScorer, candidate_vectors, pareto_front, select
from harness.config import load_experiment
from harness.data import fingerprint
from harness.errors import UserError
from harness.merge.adapters import read_adapter
from harness.modeling import load_causal_lm
from harness.train.runner import method_data, train_method

CPU = torch.device("cpu")
FAST = {"batch_size": 8, "max_seq_len": 192, "max_steps": 6, "scheduler": {"warmup_steps": 1},
        "optimizer": {"lr": 1e-2}}
LAYER_AVERAGING = {"name": "layer_averaging", "options": {
    "blocks": 2, "alpha_grid": [0.0, 0.5, 1.0], "budget": None, "max_points": 3, "validation_records": 8,
    "corpus_docs": 12, "corpus_seq_len": 64}}


def write_corpus(path: Path) -> Path:
    """Text unlike the instruction data (random letters): SFT makes it less likely, so the two
    proxies trade off and the front has inner points."""
    rng = random.Random(0)
    lines = [" ".join("".join(rng.choice("qxzjkvwy") for _ in range(rng.randint(2, 7))) for _ in range(40))
             for _ in range(20)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_experiment(root: Path, validation_fraction: float, **options) -> Path:
    corpus = write_corpus(root / "corpus.txt")
    method = {**LAYER_AVERAGING, "options": {**LAYER_AVERAGING["options"], "corpus": str(corpus), **options}}
    exp = {"name": "hma", "base_model": {"id": "builtin:tiny-llama"},
           "data": {"source": "builtin:toy-instructions", "max_samples": 64},
           "training": {**FAST, "validation_fraction": validation_fraction},
           "methods": ["vanilla", method], "results_dir": "res"}
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def train(path: Path, name: str):
    exp = load_experiment(path)
    return train_method(exp, next(m for m in exp.methods if m.row_name == name), 0, exp.results_dir)


@pytest.fixture(scope="module")
def vanilla_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hma")
    path = write_experiment(root, validation_fraction=0.2)
    return path, train(path, "vanilla").checkpoint


def base_logits() -> torch.Tensor:
    return logits(load_causal_lm("builtin:tiny-llama", None, "float32", CPU).eval())


def dense_logits_without(vanilla_dir: Path, dropped_layers: set[int]) -> torch.Tensor:
    """Reference built by hand: base weights + s·B·A of every module outside `dropped_layers`."""
    model = load_causal_lm("builtin:tiny-llama", None, "float32", CPU).eval()
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, module in read_adapter(vanilla_dir).modules.items():
            if int(name.split("layers.")[1].split(".")[0]) not in dropped_layers:
                params[name] += module.delta()
    return logits(model)


def test_blocks_are_contiguous_and_balanced():
    names = [f"model.layers.{i}.mlp.up_proj.weight" for i in range(32)]
    plan = plan_blocks(names, 3)
    assert [len(b) for b in plan.blocks] == [11, 11, 10] and plan.blocks[0][0] == 0 and plan.blocks[2][-1] == 31
    assert plan.block_of("model.layers.11.mlp.up_proj.weight") == 1
    assert plan_blocks(names[:2], 3).blocks == ((0,), (1,))  # never more blocks than layers
    with pytest.raises(UserError, match="lm_head.weight is not inside a numbered layer"):
        plan_blocks([*names, "lm_head.weight"], 3)


def test_per_block_alpha_is_exact(vanilla_run, tmp_path):
    _, vanilla = vanilla_run
    plan = plan_blocks(read_adapter(vanilla.path).modules, 3)
    assert plan.blocks == ((0,), (1,))
    written = {alphas: write_block_scaled(vanilla, plan, alphas, tmp_path / str(alphas), {})
               for alphas in [(1.0, 1.0), (0.0, 0.0), (0.0, 1.0), (1.0, 0.0)]}
    vanilla_logits = peft_logits(vanilla.path)
    assert not torch.allclose(vanilla_logits, base_logits(), atol=1e-3)  # the update matters
    torch.testing.assert_close(peft_logits(written[(1.0, 1.0)].path), vanilla_logits)
    torch.testing.assert_close(peft_logits(written[(0.0, 0.0)].path), base_logits())
    for alphas, dropped in (((0.0, 1.0), {0}), ((1.0, 0.0), {1})):
        torch.testing.assert_close(peft_logits(written[alphas].path), dense_logits_without(vanilla.path, dropped),
                                   rtol=1e-4, atol=1e-5)
    # The search scores a vector by setting each module's LoRA scaling: the model the written checkpoint is.
    scorer = ProxyScorer(vanilla.path, vanilla.manifest["base_model"], plan.block_of, [], [], 64, 0)
    scorer.set_alphas((0.0, 1.0))
    torch.testing.assert_close(logits(scorer.model), peft_logits(written[(0.0, 1.0)].path))


def _guard_benchmarks(monkeypatch):
    """Every way a benchmark's items are read raises: the search must need none of them."""
    import datasets
    import lm_eval.evaluator

    import harness.evaluate.runner
    import suites.judged.questions
    import suites.knowledge.data

    def refuse(*args, **kwargs):
        raise AssertionError(f"benchmark data read during the layer_averaging search: {args[:1]}")

    for module, name in ((datasets, "load_dataset"), (lm_eval.evaluator, "simple_evaluate"),
                         (harness.evaluate.runner, "run_eval"), (suites.judged.questions, "load_questions"),
                         (suites.knowledge.data, "sources_for")):
        monkeypatch.setattr(module, name, refuse)


def test_search_reuses_vanilla_and_reads_no_benchmark(vanilla_run, monkeypatch):
    path, vanilla = vanilla_run
    runs = sorted(p.name for p in (vanilla.path.parent).iterdir())
    _guard_benchmarks(monkeypatch)
    result = train(path, "layer_averaging")
    assert sorted(p.name for p in vanilla.path.parent.iterdir()) == runs  # vanilla's run, not retrained
    assert result.runs[0].path == vanilla.path
    manifests = [c.manifest for c in result.checkpoints]
    record = manifests[0]["layer_averaging"]
    # What it read: the experiment's held-out records and the toy corpus, nothing else.
    held_out = method_data(load_experiment(path)).validation
    assert record["validation"]["fingerprint"] == fingerprint(held_out[:8])
    assert record["validation"]["source"].startswith("the experiment's validation split")
    assert record["knowledge_proxy"]["corpus"] == str(path.parent / "corpus.txt")
    assert record["knowledge_proxy"]["n_docs"] == 12
    # The manifest: every searched vector with its scores, the front, and this point's α and scores.
    assert record["n_candidates"] == 9 and len(record["candidates"]) == 9
    assert record["blocks"] == [[0], [1]]
    front = {tuple(c["alphas"]) for c in record["front"]}
    for m in manifests:
        alphas = tuple(m["layer_averaging"]["alphas"])
        assert m["variant"] == "alphas=" + ",".join(f"{a:g}" for a in alphas)
        assert alphas in front and alphas not in {(0.0, 0.0), (1.0, 1.0)}
        assert m["layer_averaging"]["validation_scores"]["alphas"] == list(alphas)
        assert m["scaled_from"]["run_key"] == vanilla.manifest["run_key"]
    chosen = [tuple(c["alphas"]) for c in record["selected"]]
    assert chosen == [tuple(m["layer_averaging"]["alphas"]) for m in manifests]
    scores = {tuple(c["alphas"]): c for c in record["candidates"]}
    assert scores[(1.0, 1.0)]["instruction_loss"] < scores[(0.0, 0.0)]["instruction_loss"]  # SFT helped


def test_own_validation_split_is_never_trained_on(tmp_path):
    path = write_experiment(tmp_path, validation_fraction=0.0, selection="knee")
    vanilla = train(path, "vanilla").checkpoint
    result = train(path, "layer_averaging")
    (run,) = result.runs
    assert run.path != vanilla.path  # vanilla's recipe, trained once without the held-out records
    records = method_data(load_experiment(path)).records
    seen, held = split_held_out(records, 8, 0)
    assert len(held) == 8 and not set(held) & set(seen)
    assert run.manifest["data"]["fingerprint"] == fingerprint(seen)
    assert vanilla.manifest["data"]["fingerprint"] == fingerprint(records)
    (checkpoint,) = result.checkpoints  # knee: one point
    assert checkpoint.manifest["layer_averaging"]["validation"]["fingerprint"] == fingerprint(held)


def test_declared_validation_source_must_be_held_out(vanilla_run, tmp_path):
    path, _ = vanilla_run
    exp = yaml.safe_load(path.read_text())
    exp["methods"][1]["options"]["validation"] = {"source": "builtin:toy-instructions", "max_samples": 64}
    exp["results_dir"] = str(path.parent / "res")
    declared = tmp_path / "declared.yaml"
    declared.write_text(yaml.safe_dump(exp))
    with pytest.raises(UserError, match="validation: .* are in vanilla's training data"):
        train(declared, "layer_averaging")


def cand(alphas, x, y) -> Candidate:
    return Candidate(tuple(alphas), x, y)


def test_front_and_selection_rules():
    points = [cand((1, 1), 1.0, 3.0), cand((0, 0), 3.0, 1.0), cand((1, 0.5), 1.2, 2.0), cand((0.5, 1), 1.5, 2.5),
              cand((0.5, 0.5), 2.0, 1.5), cand((0, 1), 2.5, 1.2), cand((1, 0), 2.2, 2.2)]
    front = pareto_front(points)
    # (0.5, 1) is beaten by (1, 0.5); (1, 0) by (0.5, 0.5)
    assert [c.alphas for c in front] == [(1, 1), (1, 0.5), (0.5, 0.5), (0, 1), (0, 0)]
    assert [c.alphas for c in select(front, "pareto", 10)] == [(1, 0.5), (0.5, 0.5), (0, 1)]  # endpoints out
    assert [c.alphas for c in select(front, "pareto", 2)] == [(1, 0.5), (0, 1)]  # both ends of the pool
    assert [c.alphas for c in select(front, "pareto", 5, include_endpoints=True)] == [c.alphas for c in front]
    # knee: nearest the ideal (1.0, 1.0) with both axes scaled to [0, 1] over the pool
    assert [c.alphas for c in select(front, "knee", 4)] == [(0.5, 0.5)]


def test_budget_keeps_the_uniform_vectors():
    vectors = candidate_vectors([0, 0.25, 0.5, 0.75, 1.0], 3, budget=20, seed=0)
    assert len(vectors) == 20 and all((a, a, a) in vectors for a in (0, 0.25, 0.5, 0.75, 1.0))
    assert vectors == candidate_vectors([0, 0.25, 0.5, 0.75, 1.0], 3, budget=20, seed=0)
    assert len(candidate_vectors([0, 1], 3, budget=None, seed=0)) == 8
    # 32 blocks of 5 values: 5^32 vectors, sampled without being listed
    large = candidate_vectors([0, 0.25, 0.5, 0.75, 1.0], 32, budget=300, seed=0)
    assert len(large) == len(set(large)) == 300 and (0.5,) * 32 in large


def test_bad_options_are_one_line_errors(tmp_path):
    path = write_experiment(tmp_path, 0.0, alpha_grid=[0.0, 1.5])
    with pytest.raises(UserError, match=r"options.alpha_grid: every alpha must be in \[0, 1\]"):
        load_experiment(path)
    path = write_experiment(tmp_path, 0.0, blocks=32, budget=None)
    with pytest.raises(UserError, match=r"budget: the grid has 1,853,020,188,851,841 α vectors"):
        load_experiment(path)


def test_a_front_of_endpoints_only_selects_them():
    front = pareto_front([cand((1, 1), 1.0, 1.0), cand((0.5, 0.5), 2.0, 2.0), cand((0, 0), 3.0, 3.0)])
    assert [c.alphas for c in select(front, "pareto", 3)] == [(1, 1)]  # vanilla beat every other vector


def test_held_out_sample_is_seeded_and_capped():
    records = list(range(50))
    seen, held = split_held_out(records, 128, 3)
    assert len(held) == 10 and sorted(seen + held) == records  # at most a fifth of the data
    assert split_held_out(records, 128, 3) == (seen, held) and split_held_out(records, 128, 4)[1] != held
    with pytest.raises(UserError, match="cannot hold out validation records from 1 training record"):
        split_held_out([0], 5, 0)
