"""Eval jobs reserve a GPU from a cluster executor whenever their backend runs the model: `auto`
(the paper experiment's) included, since Ray and Slurm hide the GPUs from a job that reserved none."""

from __future__ import annotations

import yaml

from harness.config import load_experiment
from harness.pipeline.graph import eval_gpus, eval_jobs


def test_backends_that_run_the_model_reserve_one_gpu() -> None:
    assert eval_gpus("auto", {}) == 1
    assert eval_gpus("vllm", {}) == 1
    assert eval_gpus("hf", {}) == 1
    assert eval_gpus("hf", {"device": "cuda:1"}) == 1
    assert eval_gpus("hf", {"device": "cpu"}) == 0  # pinned to the CPU
    assert eval_gpus("answers", {"answers": "a.jsonl"}) == 0  # no model


def test_the_paper_experiments_auto_backend_evals_reserve_a_gpu(tmp_path) -> None:
    exp = {"name": "gpus", "base_model": {"id": "builtin:tiny-llama"},
           "data": {"source": "builtin:toy-instructions"}, "methods": ["vanilla"],
           "suites": ["knowledge"],
           "backend": {"name": "auto"}, "results_dir": str(tmp_path / "res")}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    jobs = eval_jobs(load_experiment(path), "builtin:tiny-llama", "base", "vanilla", 0, (), {})
    assert [(job.kind, job.gpus) for job in jobs] == [("eval", 1)]
