"""Run one suite against one target with one backend, and record every benchmark in the store.

The order is chosen to fail early: options are validated, the suite prepares (data present and
well-formed, opt-ins given) and the target is resolved before the backend loads any model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from harness import registry
from harness.errors import UserError
from harness.evaluate.protocols import BenchmarkResult, SuiteContext
from harness.evaluate.target import EvalTarget, outputs_target, resolve_target
from harness.store import EvalRun, ResultsStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalRequest:
    """Everything one `atax eval` (or one pipeline eval job) asks for."""

    target: str | None  # CHECKPOINT_OR_MODEL; None only for backends that need no model
    suite: str
    suite_options: dict[str, Any] = field(default_factory=dict)
    backend: str = "auto"
    backend_options: dict[str, Any] = field(default_factory=dict)
    results_dir: Path = Path("atax-results")
    cache: bool = True
    experiment: str | None = None
    method: str | None = None
    seed: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # added to every run's meta (the pipeline's eval_key)
    supersede: bool = False  # the label's runs on other checkpoints go (pipeline rows; see record_evals)


@dataclass(frozen=True)
class EvalOutcome:
    target: EvalTarget
    backend: str
    results: list[BenchmarkResult]


def run_eval(request: EvalRequest, ctx: SuiteContext | None = None) -> EvalOutcome:
    ctx = ctx or SuiteContext()
    suite_cls = registry.suites.get(request.suite)
    suite_options = validate_options(suite_cls, request.suite_options, f"suite '{request.suite}'")
    backend_name = pick_backend(request.backend, _kind_of(request.target))
    backend_cls = registry.backends.get(backend_name)
    options = auto_backend_options(request.backend, backend_name, request.backend_options)
    backend_options = validate_options(backend_cls, options, f"backend '{backend_name}'")

    plan = suite_cls().prepare(suite_options, ctx)
    target = _target(request.target, backend_name, backend_options)
    lm = backend_cls().make_lm(target, backend_options, plan.tasks)

    from harness.evaluate.lmeval_lm import TrackedLM, response_cache_path

    options_json = _dump(backend_options)
    cache_db = None
    if request.cache and backend_cls.cache_responses:
        cache_db = response_cache_path(target, backend_name, options_json)
        ctx.log(f"response cache: {cache_db}_rank0.db")
    tracked = TrackedLM(lm, plan.tasks, ctx.on_progress, cache_db)
    try:
        results = plan.run(tracked, replace(ctx, target=target, results_dir=Path(request.results_dir)))
    finally:
        tracked.close()
    for result in results:  # how the backend computed the answers (e.g. hf: prefix cache or lm-eval's path)
        if getattr(lm, "engine_paths", None):
            result.meta["engine_paths"] = dict(lm.engine_paths)
    record(request, target, backend_name, options_json, results)
    return EvalOutcome(target, backend_name, results)


def record(request: EvalRequest, target: EvalTarget, backend: str, backend_options: dict[str, Any],
           results: list[BenchmarkResult]) -> None:
    """Store the target and one eval run per benchmark, all in one transaction (each replaces an
    earlier run of the same label)."""
    runs = []
    for result in results:
        meta = {**request.meta, **result.meta, "primary_metric": result.primary, "backend": backend,
                "eval_benchmarks": [r.benchmark for r in results],  # what a complete copy holds
                "backend_options": backend_options,
                "batch_size": backend_options.get("batch_size"),
                "target": {"ref": target.ref, "kind": target.kind, "model": target.model,
                           "adapter": str(target.adapter) if target.adapter else None,
                           "content_hash": target.content_hash}}
        run = EvalRun(target.key, request.suite, result.benchmark, request.experiment, request.method,
                      request.seed, meta)
        runs.append((run, result.scores, result.items))
    with ResultsStore.open(request.results_dir) as store:
        store.add_checkpoint(target.key, str(target.path or target.ref), target.kind, target.content_hash,
                             target.provenance)
        store.record_evals(runs, supersede=request.supersede)


# Checkpoint kinds only the hf backend can run (vLLM serves plain and LoRA models).
HF_ONLY_KINDS = ("ensemble", "loramoe")


def _kind_of(ref: str | None) -> str | None:
    if ref is None:
        return None
    from harness.checkpoint import MANIFEST, Checkpoint

    if (Path(ref) / MANIFEST).is_file():
        return Checkpoint.load(Path(ref)).kind  # a damaged checkpoint is a one-line error here, before any work
    return None


def pick_backend(name: str, kind: str | None = None) -> str:
    """`auto`: vllm where CUDA is present and a vllm backend is installed, else hf (always hf
    for checkpoint kinds vLLM cannot serve)."""
    if name != "auto":
        return name
    if kind in HF_ONLY_KINDS:
        return "hf"
    import importlib.util

    import torch

    vllm_installed = "vllm" in registry.backends and importlib.util.find_spec("vllm") is not None
    return "vllm" if torch.cuda.is_available() and vllm_installed else "hf"


def auto_backend_options(requested: str, picked: str, options: dict[str, Any]) -> dict[str, Any]:
    """`auto` picks the faster engine per request type too: where it picks vllm, log-likelihoods go to
    the hf backend's shared-prefix scorer (vLLM prefills every choice in full: on paper 32 against 9 min
    for the nine benchmarks on a 7B, bench/eval_cost_on_paper.py) unless the options choose."""
    if requested == "auto" and picked == "vllm":
        return {"loglikelihood_engine": "hf", **options}
    return options


def validate_options(plugin: Any, options: dict[str, Any], what: str) -> BaseModel:
    model: type[BaseModel] | None = getattr(plugin, "Options", None)
    if model is None:
        if options:
            raise UserError(f"{what} takes no options (got {', '.join(sorted(options))})")
        return BaseModel()
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "options"
        if error["type"] == "extra_forbidden":
            known = ", ".join(model.model_fields) or "none"
            raise UserError(f"{what}: unknown option '{where}'; it takes: {known}") from None
        # A validator's own message, without pydantic's "Value error, " prefix.
        message = str(error.get("ctx", {}).get("error", error["msg"])) if error["type"] == "value_error" \
            else error["msg"]
        raise UserError(f"{what}: option '{where}': {message}") from None


def _target(ref: str | None, backend: str, options: BaseModel) -> EvalTarget:
    if ref is not None:
        return resolve_target(ref)
    files = [value for value in options.model_dump().values() if isinstance(value, Path)]
    if not files:
        raise UserError(f"CHECKPOINT_OR_MODEL is missing; the {backend} backend evaluates a checkpoint or model")
    return outputs_target(backend, files, _dump(options))


def _dump(options: BaseModel) -> dict[str, Any]:
    return options.model_dump(mode="json")
