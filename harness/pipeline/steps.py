"""What each kind of job does (run in a worker process), and which jobs its outputs create.

plan    -> the method's RunSpecs (and their run keys)       => one train job per run + a combine job
train   -> one run's checkpoint (reused if its key exists)
combine -> the method's checkpoint(s)                      => one eval job per checkpoint x suite
eval    -> scores and per-item records in the store
report  -> tables and the leaderboard page from the store
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import __version__
from harness.config import Experiment, MethodEntry, load_experiment
from harness.keys import content_key
from harness.method import run_spec_from_dict, run_spec_to_dict
from harness.pipeline.jobs import Job

STEPS_VERSION = "2"  # 2: eval jobs per label (experiment, row, seed), computed once per eval_key


def method_entry(experiment: Experiment, row: str) -> tuple[Experiment, MethodEntry]:
    """Row `row`'s entry and the experiment as it trains (a sweep row, e.g. vanilla@0.25, has its data
    size applied)."""
    from harness.analyze.sweep import find_row

    found = find_row(experiment, row)
    return found.experiment, found.entry


def load(job: Job) -> tuple[Experiment, Path]:
    return load_experiment(job.spec["experiment"]), Path(job.spec["results_dir"])


def run_job(job: Job) -> dict[str, Any]:
    """Execute `job` in this process; returns its outputs (recorded in its done-marker)."""
    return {"plan": _plan, "train": _train, "combine": _combine, "eval": _eval, "report": _report}[job.kind](job)


def _plan(job: Job) -> dict[str, Any]:
    from harness.train.runner import method_data, plan_method, train_job

    experiment, results = load(job)
    (experiment, entry), seed = method_entry(experiment, job.spec["method"]), job.spec["seed"]
    data = method_data(experiment)
    specs = plan_method(experiment, entry, seed, results, data)
    keys = [train_job(experiment, entry, seed, results, data, spec).run_key for spec in specs]
    return {"specs": [run_spec_to_dict(s) for s in specs], "run_keys": keys}


def _train_jobs(job: Job, outputs: dict[str, Any]) -> tuple[list[Any], list[Any], Any]:
    from harness.analyze.sweep import find_row, sweep_provenance
    from harness.train.runner import method_data, train_job

    experiment, results = load(job)
    row, seed = find_row(experiment, job.spec["method"]), job.spec["seed"]
    experiment, entry = row.experiment, row.entry
    data = method_data(experiment)
    jobs = [train_job(experiment, entry, seed, results, data, run_spec_from_dict(s)) for s in outputs["specs"]]
    for train_job_ in jobs:  # a sweep row's manifests say which data size they were trained on
        train_job_.provenance.update(sweep_provenance(row, len(data.records)))
    return jobs, [experiment, entry, seed, results], data


def _train(job: Job) -> dict[str, Any]:
    from harness.pipeline.jobs import outputs_of
    from harness.progress import QuietProgress
    from harness.train.engine import train

    plan = outputs_of(Path(job.spec["results_dir"]), job.spec["plan_key"])
    assert plan is not None, "train job scheduled before its plan finished"
    jobs, _, _ = _train_jobs(job, plan)
    checkpoint = train(jobs[job.spec["index"]], QuietProgress())
    return {"path": str(checkpoint.path), "run_key": checkpoint.run_key}


def _combine(job: Job) -> dict[str, Any]:
    from harness.checkpoint import Checkpoint
    from harness.pipeline.jobs import outputs_of
    from harness.train.runner import combine_method

    plan = outputs_of(Path(job.spec["results_dir"]), job.spec["plan_key"])
    assert plan is not None, "combine job scheduled before its plan finished"
    jobs, (experiment, entry, seed, results), data = _train_jobs(job, plan)
    runs = [Checkpoint.load(j.out_dir) for j in jobs]
    finals = combine_method(experiment, entry, seed, results, data, jobs, runs)
    return {"checkpoints": [{"path": str(c.path), "key": c.run_key or str(c.path),
                             "variant": c.variant} for c in finals]}


def _eval(job: Job) -> dict[str, Any]:
    from harness.evaluate.protocols import SuiteContext
    from harness.evaluate.runner import EvalRequest, run_eval
    from harness.store import ResultsStore

    experiment, results = load(job)
    spec = job.spec
    with ResultsStore.open(results) as store:  # the same evaluation done for another label: copy it
        copied = store.copy_evals(spec["eval_key"], experiment.name, spec["row"], spec.get("seed"))
        if copied:
            runs = [r for i in copied for r in store.scores(eval_id=i)]
            return {"target": runs[0].checkpoint, "copied_evals": copied,
                    "benchmarks": {b: {r.metric: r.value for r in runs if r.benchmark == b}
                                   for b in sorted({r.benchmark for r in runs})}}
    request = EvalRequest(
        target=spec["target"], suite=spec["suite"], suite_options=spec["suite_options"],
        backend=experiment.backend.name, backend_options=dict(experiment.backend.options), results_dir=results,
        experiment=experiment.name, method=spec["row"], seed=spec.get("seed"), meta={"eval_key": spec["eval_key"]},
        supersede=True)
    outcome = run_eval(request, SuiteContext())
    return {"target": outcome.target.key, "benchmarks": {r.benchmark: r.values() for r in outcome.results}}


def _report(job: Job) -> dict[str, Any]:
    from harness.analyze.sweep import report_experiment
    from harness.pipeline.report import write_report

    experiment, results = load(job)
    return write_report(report_experiment(experiment), results,
                        sweep=experiment if experiment.sweep is not None else None)


# ---- building and expanding the DAG --------------------------------------------------------

def base_spec(experiment_path: Path, results_dir: Path) -> dict[str, Any]:
    return {"experiment": str(Path(experiment_path).resolve()), "results_dir": str(Path(results_dir).resolve())}


def plan_job(experiment: Experiment, entry: MethodEntry, seed: int, common: dict[str, Any]) -> Job:
    key = content_key({"kind": "plan", "method": entry.name, "options": entry.options, "seed": seed,
                       "data": experiment.data.model_dump(mode="json"),
                       "validation": experiment.training.validation_fraction,
                       "base_model": experiment.base_model.model_dump(mode="json"),
                       "training": experiment.training.model_dump(mode="json"),
                       "atax": __version__, "steps": STEPS_VERSION})
    return Job(key, "plan", f"plan {entry.row_name} seed {seed}", (), {**common, "method": entry.row_name,
                                                                       "seed": seed})


def eval_jobs(experiment: Experiment, target: str, target_key: str, row: str, seed: int | None,
              deps: tuple[str, ...], common: dict[str, Any]) -> list[Job]:
    """One job per suite and label. Rows (or experiments sharing the results directory) whose
    checkpoints are the same share one `eval_key`: the first evaluates, the others copy its runs."""
    gpus = 1 if experiment.backend.name in ("vllm",) else 0
    jobs = []
    for suite in experiment.suites:
        eval_key = content_key({"kind": "eval", "target": target_key, "suite": suite.name, "options": suite.options,
                                "backend": experiment.backend.model_dump(mode="json"), "steps": STEPS_VERSION})
        label = {"experiment": experiment.name, "row": row, "seed": seed}
        jobs.append(Job(content_key({"eval_key": eval_key, "label": label}), "eval",
                        f"eval {row}{'' if seed is None else f' seed {seed}'} on {suite.name}", deps,
                        {**common, "target": target, "suite": suite.name, "suite_options": suite.options,
                         "row": row, "seed": seed, "eval_key": eval_key}, gpus=gpus))
    return jobs


def initial_jobs(experiment: Experiment, common: dict[str, Any], only: set[str] | None = None) -> list[Job]:
    """Plan jobs for every method (each sweep row) x seed, and the base model's evals (the reference row)."""
    from harness.analyze.sweep import selected, sweep_rows

    jobs = [plan_job(row.experiment, row.entry, seed, common) for row in sweep_rows(experiment)
            if selected(row, only) for seed in experiment.seeds]
    base = experiment.base_model
    jobs += eval_jobs(experiment, base.id, content_key({"base": base.model_dump(mode="json")}), "base", None, (),
                      common)
    return jobs


def expand(job: Job, outputs: dict[str, Any]) -> list[Job]:
    """The jobs that `job`'s outputs make known."""
    common = {k: job.spec[k] for k in ("experiment", "results_dir")}
    if job.kind == "plan":
        train = [Job(key, "train", f"train {job.spec['method']} seed {job.spec['seed']} {spec['name']}", (job.key,),
                     {**common, "method": job.spec["method"], "seed": job.spec["seed"], "plan_key": job.key,
                      "index": i}, gpus=1)
                 for i, (key, spec) in enumerate(zip(outputs["run_keys"], outputs["specs"], strict=True))]
        combine_key = content_key({"kind": "combine", "plan": job.key, "runs": outputs["run_keys"]})
        combine = Job(combine_key, "combine", f"combine {job.spec['method']} seed {job.spec['seed']}",
                      (job.key, *[t.key for t in train]),
                      {**common, "method": job.spec["method"], "seed": job.spec["seed"], "plan_key": job.key})
        return [*train, combine]
    if job.kind == "combine":
        experiment = load_experiment(job.spec["experiment"])
        jobs = []
        for checkpoint in outputs["checkpoints"]:
            row = job.spec["method"] + (f"[{checkpoint['variant']}]" if checkpoint["variant"] else "")
            jobs += eval_jobs(experiment, checkpoint["path"], checkpoint["key"], row, job.spec["seed"], (job.key,),
                              common)
        return jobs
    return []


def report_job(eval_keys: list[str], common: dict[str, Any]) -> Job:
    return Job(content_key({"kind": "report", "evals": sorted(eval_keys), "steps": STEPS_VERSION}), "report",
               "report", tuple(sorted(eval_keys)), dict(common))
