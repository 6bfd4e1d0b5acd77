"""Building the DAG: the jobs an experiment starts with, and the jobs each finished job makes known.

plan    (row x seed)       => one train job per planned run + one combine job
combine                    => one eval job per checkpoint x suite
the base model's evals, and at the end one report job.

Every key folds in the code versions the job executes (harness.keys.versioned_key): a plan the
method's version; a train job the engine's and its hooks'; a combine the method's and its merge
operators'; an eval its suite's and backend's. They are computed here, from the code installed
now, so a plug-in whose version changed gets new jobs even where older outputs exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import __version__, registry
from harness.config import Experiment
from harness.keys import (
    combine_versions,
    content_key,
    eval_versions,
    method_versions,
    run_versions,
    versioned_key,
)
from harness.pipeline.jobs import Job
from harness.pipeline.rows import Row, experiment_rows, find_row, selected

STEPS_VERSION = "3"  # 3: code versions in every key, typed per-job specs, combine outputs keyed by combine


def base_spec(experiment_path: Path, results_dir: Path) -> dict[str, Any]:
    return {"experiment": str(Path(experiment_path).resolve()), "results_dir": str(Path(results_dir).resolve())}


def plan_job(row: Row, seed: int, common: dict[str, Any]) -> Job:
    experiment, entry = row.experiment, row.entry
    material = {"kind": "plan", "method": entry.name, "options": entry.options, "seed": seed,
                "data": experiment.data.model_dump(mode="json"),
                "validation": experiment.training.validation_fraction,
                "base_model": experiment.base_model.model_dump(mode="json"),
                "training": experiment.training.model_dump(mode="json"), "atax": __version__, "steps": STEPS_VERSION}
    versions = method_versions(entry.name)
    key, logical = versioned_key(material, versions)
    return Job(key, "plan", f"plan {entry.row_name} seed {seed}", (),
               {**common, "method": entry.row_name, "seed": seed}, logical=logical, versions=versions)


def eval_gpus(backend: str, options: dict[str, Any]) -> int:
    """GPUs an eval job reserves from a cluster executor (ray, slurm): one where its backend runs the
    model, `auto` included (it picks vLLM or hf on the node, where it must find the GPU; with none
    reserved, Ray and Slurm hide the GPUs and a 7B would be evaluated on the CPU); none for a backend
    that runs no model or an hf backend pinned to the CPU."""
    if backend != "auto":
        if backend in registry.backends and not getattr(registry.backends.get(backend), "runs_model", True):
            return 0
        if str(options.get("device") or "").startswith("cpu"):
            return 0
    return 1


def eval_jobs(experiment: Experiment, target: str, target_key: str, row: str, seed: int | None,
              deps: tuple[str, ...], common: dict[str, Any]) -> list[Job]:
    """One job per suite and label. Rows (or experiments sharing the results directory) whose
    checkpoints are the same share one `eval_key`: the first evaluates, the others copy its runs."""
    gpus = eval_gpus(experiment.backend.name, experiment.backend.options)
    jobs = []
    for suite in experiment.suites:
        material = {"kind": "eval", "target": target_key, "suite": suite.name, "options": suite.options,
                    "backend": experiment.backend.model_dump(mode="json"), "steps": STEPS_VERSION}
        versions = eval_versions(suite.name, experiment.backend.name)
        eval_key, eval_logical = versioned_key(material, versions)
        label = {"experiment": experiment.name, "row": row, "seed": seed}
        jobs.append(Job(content_key({"eval_key": eval_key, "label": label}), "eval",
                        f"eval {row}{'' if seed is None else f' seed {seed}'} on {suite.name}", deps,
                        {**common, "target": target, "suite": suite.name, "suite_options": suite.options,
                         "row": row, "seed": seed, "eval_key": eval_key}, gpus=gpus,
                        logical=content_key({"eval_key": eval_logical, "label": label}), versions=versions))
    return jobs


def initial_jobs(experiment: Experiment, common: dict[str, Any], only: set[str] | None = None) -> list[Job]:
    """Plan jobs for every row x seed, and the base model's evals (the reference row)."""
    jobs = [plan_job(row, seed, common) for row in experiment_rows(experiment)
            if selected(row, only) for seed in experiment.seeds]
    base = experiment.base_model
    jobs += eval_jobs(experiment, base.id, content_key({"base": base.model_dump(mode="json")}), "base", None, (),
                      common)
    return jobs


def expand(job: Job, outputs: dict[str, Any], experiment: Experiment) -> list[Job]:
    """The jobs that `job`'s outputs make known (`experiment`: the job's experiment, loaded)."""
    common = {k: job.spec[k] for k in ("experiment", "results_dir")}
    if job.kind == "plan":
        return _after_plan(job, outputs, experiment, common)
    if job.kind == "combine":
        jobs = []
        for checkpoint in outputs["checkpoints"]:
            row = job.spec["method"] + (f"[{checkpoint['variant']}]" if checkpoint["variant"] else "")
            jobs += eval_jobs(experiment, checkpoint["path"], checkpoint["key"], row, job.spec["seed"], (job.key,),
                              common)
        return jobs
    return []


def _after_plan(job: Job, outputs: dict[str, Any], experiment: Experiment, common: dict[str, Any]) -> list[Job]:
    from harness.method import run_spec_from_dict
    from harness.train.engine import ENGINE_VERSION
    from harness.train.runner import build_method

    row, seed = job.spec["method"], job.spec["seed"]
    runs, train = [], []
    for i, planned in enumerate(outputs["runs"]):
        versions = run_versions(run_spec_from_dict(planned["run"]), ENGINE_VERSION)
        key, logical = versioned_key(planned["material"], versions)
        runs.append({"run": planned["run"], "key": key})
        train.append(Job(key, "train", f"train {row} seed {seed} {planned['run']['name']}", (job.key,),
                         {**common, "method": row, "seed": seed, "plan_key": job.key, "index": i,
                          "run": planned["run"], "run_key": key}, gpus=1, logical=logical, versions=versions))
    versions = combine_versions(find_row(experiment, row).entry.name, build_method(find_row(experiment, row).entry))
    key, logical = versioned_key({"kind": "combine", "plan": job.key, "runs": [r["key"] for r in runs],
                                  "steps": STEPS_VERSION}, versions)
    combine = Job(key, "combine", f"combine {row} seed {seed}", (job.key, *[t.key for t in train]),
                  {**common, "method": row, "seed": seed, "plan_key": job.key, "runs": runs},
                  logical=logical, versions=versions)
    return [*train, combine]


def report_job(eval_keys: list[str], common: dict[str, Any]) -> Job:
    key = content_key({"kind": "report", "evals": sorted(eval_keys), "steps": STEPS_VERSION})
    return Job(key, "report", "report", tuple(sorted(eval_keys)), dict(common), logical=key)
