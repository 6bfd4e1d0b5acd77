"""What each kind of job does, in whichever process runs it; each returns the outputs recorded in
its done-marker.

plan    -> the method's RunSpecs, with what determines each run's key   (graph.expand makes the jobs)
train   -> one run's checkpoint: the worker rebuilds only its own run from its job's spec
combine -> the method's checkpoint(s), from the runs named in its spec
eval    -> scores and per-item records in the store
report  -> tables and the leaderboard page from the store

A method may name steps that load no model (`light_steps`, e.g. {"plan", "combine"} for an
identity combine): the scheduler runs those in its own process instead of a worker each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import Experiment, load_experiment
from harness.keys import content_key
from harness.pipeline.jobs import Job, discard_dir
from harness.pipeline.rows import Row, find_row


@dataclass(frozen=True)
class RowContext:
    """What a plan, train or combine job works on: one row of the experiment, one seed."""

    row: Row
    seed: int
    results_dir: Path

    @property
    def experiment(self) -> Experiment:
        return self.row.experiment  # the sweep's data size applied

    @classmethod
    def of(cls, job: Job) -> RowContext:
        experiment = load_experiment(job.spec["experiment"])
        return cls(find_row(experiment, job.spec["method"]), job.spec["seed"], Path(job.spec["results_dir"]))

    def data(self) -> Any:
        """The row's instruction data, loaded once per data selection in a process (the scheduler
        runs many plans in its own)."""
        from harness.train.runner import method_data

        key = (self.experiment.data.model_dump_json(), self.experiment.training.validation_fraction)
        if key not in _DATA:
            if len(_DATA) >= 8:
                _DATA.pop(next(iter(_DATA)))
            _DATA[key] = method_data(self.experiment)
        return _DATA[key]


_DATA: dict[tuple[str, float], Any] = {}


def run_job(job: Job) -> dict[str, Any]:
    """Execute `job` in this process; returns its outputs (recorded in its done-marker)."""
    return {"plan": _plan, "train": _train, "combine": _combine, "eval": _eval, "report": _report}[job.kind](job)


def is_light(job: Job, experiment: Experiment) -> bool:
    """Whether `job` loads no model, so the scheduler may run it in its own process."""
    if job.kind not in ("plan", "combine"):
        return False
    from harness.train.runner import build_method

    method = build_method(find_row(experiment, job.spec["method"]).entry)
    light = getattr(method, "light_steps", frozenset())
    return job.kind in (light() if callable(light) else light)


def _plan(job: Job) -> dict[str, Any]:
    from harness.data import fingerprint
    from harness.method import run_spec_to_dict
    from harness.train.runner import apply_overrides, plan_method, run_key_parts, run_records

    ctx = RowContext.of(job)
    data = ctx.data()
    runs = []
    for spec in plan_method(ctx.experiment, ctx.row.entry, ctx.seed, ctx.results_dir, data):
        training = apply_overrides(ctx.experiment.training, spec.training_overrides)
        material, _ = run_key_parts(ctx.experiment, training, spec, fingerprint(run_records(data, spec)),
                                    fingerprint(data.validation))
        runs.append({"run": run_spec_to_dict(spec), "material": material})
    return {"runs": runs}


def _train(job: Job) -> dict[str, Any]:
    from harness.analyze.sweep import sweep_provenance
    from harness.errors import UserError
    from harness.method import run_spec_from_dict
    from harness.progress import QuietProgress
    from harness.train.engine import train
    from harness.train.runner import train_job

    ctx = RowContext.of(job)
    data = ctx.data()
    run = train_job(ctx.experiment, ctx.row.entry, ctx.seed, ctx.results_dir, data,
                    run_spec_from_dict(job.spec["run"]))
    if run.run_key != job.spec["run_key"]:
        raise UserError(f"{job.label}: the data of {ctx.experiment.data.source} changed since its plan ran; "
                        f"run `atax run --rerun method={ctx.row.entry.row_name}` to plan it again")
    run.provenance.update(sweep_provenance(ctx.row, len(data.records)))  # the data size a sweep row used
    if job.spec.get("rerun"):
        discard_dir(run.out_dir)
    checkpoint = train(run, QuietProgress())
    return {"path": str(checkpoint.path), "run_key": checkpoint.run_key}


def _combine(job: Job) -> dict[str, Any]:
    from harness.checkpoint import Checkpoint
    from harness.method import run_spec_from_dict
    from harness.train.runner import combine_dir, combine_method

    ctx = RowContext.of(job)
    specs = [run_spec_from_dict(r["run"]) for r in job.spec["runs"]]
    runs = [Checkpoint.load(ctx.results_dir / "runs" / r["key"]) for r in job.spec["runs"]]
    # What a merge left there ran under another combine key (other code or inputs): never reuse it.
    discard_dir(combine_dir(ctx.results_dir, ctx.row.entry, ctx.seed))
    finals = combine_method(ctx.experiment, ctx.row.entry, ctx.seed, ctx.results_dir, ctx.data(), specs, runs)
    return {"checkpoints": [{"path": str(c.path), "variant": c.variant,
                             # evals follow the combine's key, so new merge code is evaluated again
                             "key": content_key({"combine": job.key, "checkpoint": c.store_key,
                                                 "variant": c.variant})} for c in finals]}


def _eval(job: Job) -> dict[str, Any]:
    from harness.evaluate.protocols import SuiteContext
    from harness.evaluate.runner import EvalRequest, run_eval
    from harness.store import ResultsStore

    experiment, results = load_experiment(job.spec["experiment"]), Path(job.spec["results_dir"])
    spec = job.spec
    if not spec.get("rerun"):
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
    from harness.pipeline.report import write_report
    from harness.pipeline.rows import report_experiment

    experiment, results = load_experiment(job.spec["experiment"]), Path(job.spec["results_dir"])
    return write_report(report_experiment(experiment), results,
                        sweep=experiment if experiment.sweep is not None else None)
