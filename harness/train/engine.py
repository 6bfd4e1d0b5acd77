"""The one SFT engine: `train(job) -> Checkpoint`, shared by every method.

A lean loop rather than transformers.Trainer, so that packing, the loss normalisation, the
method hooks and exact resume are ours to see and test. Steps: resolve hooks -> tokenise ->
fixed step order -> AdamW + warm-up/cosine -> micro-batches with gradient accumulation ->
penalties and auxiliary losses -> curves, intermediate saves -> atomic checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness import __version__, registry
from harness.checkpoint import Checkpoint, find_complete, write_checkpoint
from harness.config.schema import BaseModelConfig, TrainingConfig
from harness.data.records import InstructionRecord, TrainRecord, fingerprint
from harness.data.templates import tokenize_records
from harness.errors import UserError
from harness.method import RunSpec
from harness.modeling import load_causal_lm, load_tokenizer, model_source_facts, pick_device
from harness.paths import cache_dir
from harness.progress import Progress, QuietProgress
from harness.train.attention import plan_batching
from harness.train.cpu_memory import keep_freed_memory
from harness.train.hooks import TrainContext, build_hook
from harness.train.loss import mean_token_loss
from harness.train.resume import TrainState, clear_state, load_state, save_state
from harness.train.schedule import step_batches
from harness.train.step import StepRunner

# Bump when a change to the engine changes what a run produces: it is part of every run key.
ENGINE_VERSION = "2"  # 2: per-sample (varlen) attention, packed rows up to max_seq_len
CURVE_FILE = "curve.jsonl"


@dataclass
class TrainJob:
    base_model: BaseModelConfig
    training: TrainingConfig  # overrides of the run already applied
    run: RunSpec
    records: list[TrainRecord]  # the run's data (indices applied; transforms are applied here)
    out_dir: Path
    run_key: str
    validation: list[TrainRecord] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)  # method, seed, ... for the manifest
    logical_key: str = ""  # run_key without the code versions (harness.pipeline.versions)
    versions: dict[str, str] = field(default_factory=dict)  # the engine's and its hooks' code versions


def train(job: TrainJob, progress: Progress | None = None) -> Checkpoint:
    """Train one run, or return its finished checkpoint if one with the same key exists."""
    existing = find_complete(job.out_dir, job.run_key)
    if existing is not None:
        return existing
    progress = progress or QuietProgress()
    started = time.monotonic()
    device = pick_device()
    keep_freed_memory(device)
    training = job.training
    tokenizer = load_tokenizer(job.base_model.id, job.base_model.revision)
    init_seed = job.run.init_seed if job.run.init_seed is not None else job.run.seed
    ctx = TrainContext(job.base_model.id, job.base_model.revision, training, job.run, init_seed, device,
                       tokenizer, cache_dir())

    records = job.records
    if job.run.data_transform is not None:
        records = build_hook(registry.data_transforms, job.run.data_transform, ctx).apply(records, ctx)
    data = tokenize_records(records, tokenizer, training.template, training.max_seq_len, training.loss_on)
    if not data.examples:
        raise ValueError(f"run {job.run.name}: no example fits max_seq_len={training.max_seq_len}")
    validation = tokenize_records(job.validation, tokenizer, training.template, training.max_seq_len,
                                  training.loss_on).examples

    torch.manual_seed(init_seed)
    model = load_causal_lm(job.base_model.id, job.base_model.revision, job.base_model.dtype, device)
    plan = plan_batching(model, training.batching, device, len(tokenizer), training.max_seq_len)
    adapter = build_hook(registry.adapters, job.run.adapter, ctx)
    model = adapter.wrap(model, ctx)
    if training.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    regularizer = build_hook(registry.regularizers, job.run.regularizer, ctx) if job.run.regularizer else None
    auxiliary = (build_hook(registry.auxiliary_losses, job.run.auxiliary_loss, ctx)
                 if job.run.auxiliary_loss else None)
    batches = step_batches(len(data.examples), training, job.run.seed)
    pad_id = tokenizer.pad_token_id
    runner = StepRunner(model, training, plan, len(batches), pad_id, device, regularizer, auxiliary)
    state = load_state(job.out_dir, job.run_key, model, runner.optimizer, runner.scheduler) or TrainState()
    resumed_from = state.step

    model.train()
    progress.start(f"train {job.run.name}", total=len(batches), completed=state.step)
    window_start, window_tokens = time.monotonic(), 0
    for step in range(state.step, len(batches)):
        result = runner.step([data.examples[i] for i in batches[step]], step)
        if not math.isfinite(result.mean_loss):  # NaN/inf never becomes a checkpoint that looks trained
            raise UserError(f"{_run_name(job)}: the training loss is {result.mean_loss} at step {step + 1} of "
                            f"{len(batches)}; lower training.optimizer.lr (now {training.optimizer.lr}) or check the data")
        state.tokens_seen += result.n_real_tokens
        window_tokens += result.n_real_tokens
        state.step = step + 1
        mean_loss = result.mean_loss
        if state.step % training.logging_steps == 0 or state.step == len(batches):
            state.curve.append({"step": state.step, "split": "train", "loss": mean_loss,
                                "tokens": state.tokens_seen})
        if validation and (state.step == len(batches)
                           or (training.eval_steps and state.step % training.eval_steps == 0)):
            state.curve.append({"step": state.step, "split": "validation", "tokens": state.tokens_seen,
                                "loss": mean_token_loss(model, validation, device, pad_id, training.max_seq_len)})
        elapsed = max(time.monotonic() - window_start, 1e-9)
        progress.update(state.step, loss=f"{mean_loss:.4f}", tok_s=f"{window_tokens / elapsed:,.0f}")
        if training.save_steps and state.step % training.save_steps == 0 and state.step < len(batches):
            save_state(job.out_dir, job.run_key, state, model, runner.optimizer, runner.scheduler)
    progress.finish()

    manifest = _manifest(job, adapter.kind, init_seed, records, data, len(validation), state,
                         (plan.how, plan.attention), resumed_from, started)

    def payload(tmp: Path) -> None:
        adapter.save(model, tmp)
        lines = [json.dumps(point) for point in state.curve]
        (tmp / CURVE_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")

    checkpoint = write_checkpoint(job.out_dir, manifest, payload)
    clear_state(job.out_dir)
    return checkpoint


def _manifest(job: TrainJob, kind: str, init_seed: int, records: list[TrainRecord], data: Any, n_validation: int,
              state: TrainState, batching: tuple[str, str], resumed_from: int, started: float) -> dict[str, Any]:
    """The checkpoint's manifest: what was trained, on what, with which code, and how it went."""
    training = job.training
    how, attention = batching
    train_losses = [p["loss"] for p in state.curve if p["split"] == "train"]
    return {
        "kind": kind,
        "run_key": job.run_key,
        "base_model": {"id": job.base_model.id, "revision": job.base_model.revision,
                       **model_source_facts(job.base_model.id)},  # a GGUF source's sha256 and quantisation
        "training": training.model_dump(mode="json"),
        "run": {"name": job.run.name, "seed": job.run.seed, "init_seed": init_seed,
                "same_init": job.run.init_seed is not None,
                "n_indices": None if job.run.indices is None else len(job.run.indices),
                "data_transform": _ref(job.run.data_transform), "regularizer": _ref(job.run.regularizer),
                "auxiliary_loss": _ref(job.run.auxiliary_loss), "adapter": _ref(job.run.adapter)},
        "data": {"fingerprint": fingerprint(records), "n_records": len(records),
                 # what an alignment-tax curve counts: Replay's pre-training text is not instruction data
                 "n_instruction_records": sum(isinstance(r, InstructionRecord) for r in records),
                 "n_examples": len(data.examples), "n_truncated": data.n_truncated,
                 "n_prompt_too_long": data.n_prompt_too_long, "n_validation": n_validation},
        "code_version": {"atax": __version__, "engine": ENGINE_VERSION, **job.versions},
        "metrics": {"final_loss": train_losses[-1] if train_losses else None,
                    "min_loss": min(train_losses) if train_losses else None,
                    "tokens_seen": state.tokens_seen, "steps": state.step, "batching": how,
                    "attention": attention,
                    "resumed_from_step": resumed_from,
                    "wall_time_s": round(time.monotonic() - started, 3)},
        "provenance": job.provenance,
    }


def _run_name(job: TrainJob) -> str:
    method, seed = job.provenance.get("method"), job.provenance.get("seed")
    return f"run {job.run.name}" + (f" of {method} seed {seed}" if method is not None else "")


def _ref(ref: Any) -> dict[str, Any] | None:
    return None if ref is None else {"name": ref.name, "options": ref.options}
