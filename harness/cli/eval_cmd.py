"""`atax eval CHECKPOINT_OR_MODEL --suite NAME`: evaluate one checkpoint on one suite and store it.

Flags map onto the suite's and the backend's own options (a flag the chosen plug-in does not take
is an error naming it); `--option KEY=VALUE` reaches any other suite option. Progress and notes
go to stderr; stdout carries only the summary table, or with --json only the JSON object.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import typer
import yaml

from harness.errors import UserError

# --quick: enough items to see a model work and an answer finish, minutes rather than hours on a CPU
# (a generation benchmark otherwise runs to its own cap, e.g. BBH's 1024 tokens per request).
QUICK_LIMIT = 20
QUICK_GEN_TOKS = 128


def eval_(
    target: str | None = typer.Argument(None, metavar="[CHECKPOINT_OR_MODEL]", help=(
        "atax checkpoint directory, Hugging Face model directory, hub id or builtin:tiny-llama; "
        "optional with --backend answers.")),
    suite: str = typer.Option("knowledge", "--suite", help="Registered suite (see `atax suites`)."),
    benchmarks: str | None = typer.Option(None, "--benchmarks", help="Comma-separated subset of the suite."),
    limit: int | None = typer.Option(None, "--limit", help="At most N items per task (quick checks only)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Local benchmark data instead of the hub."),
    backend: str = typer.Option("auto", "--backend", help="hf, answers, ... (auto: vllm on CUDA, else hf)."),
    answers: Path | None = typer.Option(None, "--answers", help="JSONL of completions (answers backend)."),
    allow_code_execution: bool = typer.Option(False, "--allow-code-execution",
                                              help="Run model-written code (HumanEval, MBPP) in the sandbox."),
    batch_size: str | None = typer.Option(None, "--batch-size", help="Backend batch size (an integer or auto)."),
    dtype: str | None = typer.Option(None, "--dtype", help="auto, float32, bfloat16 or float16."),
    max_gen_toks: int | None = typer.Option(None, "--max-gen-toks",
                                            help="Cap generated tokens (quick CPU runs; changes scores)."),
    judge_url: str | None = typer.Option(None, "--judge-url", help=(
        "Judged suites: OpenAI-compatible API base of the judge, e.g. http://127.0.0.1:8000/v1.")),
    judge_model: str | None = typer.Option(None, "--judge-model", help="Judged suites: the judge's model name."),
    questions: str | None = typer.Option(None, "--questions", help=(
        "Judged suites: FastChat question.jsonl (or its directory) or a hub dataset id.")),
    judge_prompts: Path | None = typer.Option(None, "--judge-prompts", help=(
        "Judged suites: FastChat judge_prompts.jsonl (official MT-bench prompts).")),
    judge_repeats: int | None = typer.Option(None, "--judge-repeats", help=(
        "Judged suites: judge each answer N times and keep the median.")),
    quick: bool = typer.Option(False, "--quick", help=(
        f"A first try: at most {QUICK_LIMIT} items per task and {QUICK_GEN_TOKS} generated tokens unless "
        "--limit / --max-gen-toks say otherwise (scores are a smoke test, not comparable to full runs).")),
    option: list[str] = typer.Option([], "--option", "-o", help="Another suite option, KEY=VALUE (repeatable)."),
    backend_option: list[str] = typer.Option([], "--backend-option", "-B", help=(
        "Another backend option, KEY=VALUE (repeatable), e.g. loglikelihood_engine=hf (an unknown KEY lists "
        "the backend's options).")),
    results: Path = typer.Option(Path("atax-results"), "--results", help="Results directory (SQLite store)."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Reuse this model's cached responses."),
    as_json: bool = typer.Option(False, "--json", help="Print {benchmark: {metric: value, n}} as JSON only."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or notes (for CI and logs)."),
) -> None:
    """Evaluate CHECKPOINT_OR_MODEL on a suite; every score and item goes into the results store."""
    _quiet_libraries(verbose=not quiet)  # before they are imported: some read these settings only then
    from harness.evaluate.protocols import SuiteContext
    from harness.evaluate.runner import EvalRequest, run_eval

    suite_options = _given({"benchmarks": benchmarks, "limit": limit, "data_dir": data_dir,
                            "allow_code_execution": True if allow_code_execution else None,
                            "max_gen_toks": max_gen_toks, "judge_url": judge_url, "judge_model": judge_model,
                            "questions": questions, "judge_prompts": judge_prompts, "judge_repeats": judge_repeats})
    suite_options.update(_parse_options(option, "--option"))
    display = _Display(quiet)
    if quick:
        display.log(_apply_quick(suite_options))
    backend_options = _given({"batch_size": _batch_size(batch_size), "dtype": dtype, "answers": answers})
    backend_options.update(_parse_options(backend_option, "--backend-option"))
    request = EvalRequest(target, suite, suite_options, backend, backend_options, results, cache)

    # Libraries print to stdout now and then; stdout is reserved for the table or the JSON.
    with contextlib.redirect_stdout(sys.stderr), display:
        outcome = run_eval(request, SuiteContext(on_progress=display.progress, log=display.log))
    summary = {r.benchmark: {**r.values(), "n": r.n} for r in outcome.results}
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    display.log(f"stored in {results / 'results.sqlite'} as checkpoint '{outcome.target.key}' "
                f"(backend {outcome.backend})")
    _print_table(outcome.results)


class _Display:
    """A rich progress bar per benchmark on stderr, or nothing with --quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._bar: Any = None
        self._rows: dict[str, Any] = {}

    def __enter__(self) -> _Display:
        if not self.quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("requests"), TimeElapsedColumn(), console=Console(stderr=True))
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def progress(self, benchmark: str, done: int, total: int) -> None:
        if self._bar is None:
            return
        if benchmark not in self._rows:
            self._rows[benchmark] = self._bar.add_task(benchmark, total=total)
        self._bar.update(self._rows[benchmark], completed=done, total=total)

    def log(self, message: str) -> None:
        if self.quiet:
            return
        from rich.console import Console
        from rich.markup import escape

        console = self._bar.console if self._bar is not None else Console(stderr=True)
        console.print(f"[dim]{escape(message)}[/]", soft_wrap=True)


def _print_table(results: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    for column in ("benchmark", "primary metric", "value", "n", "other metrics"):
        table.add_column(column, justify="right" if column in ("value", "n") else "left")
    for result in results:
        values = result.values()
        others = ", ".join(f"{k} {v:.4f}" for k, v in values.items() if k != result.primary)
        # A judged suite whose judge gave no usable rating has no primary value (missing, never 0).
        value = f"{values[result.primary]:.4f}" if result.primary in values else "–"
        table.add_row(result.benchmark, result.primary, value, str(result.n), others)
    Console().print(table)


def _apply_quick(suite_options: dict[str, Any]) -> str:
    """Fill in --quick's caps where the user gave none; the note says what was capped."""
    suite_options.setdefault("limit", QUICK_LIMIT)
    suite_options.setdefault("max_gen_toks", QUICK_GEN_TOKS)
    return (f"--quick: at most {suite_options['limit']} items per task, at most {suite_options['max_gen_toks']} "
            "generated tokens; a smoke test, not a score to report (drop --quick for the full benchmarks)")


def _given(options: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in options.items() if value is not None}


def _batch_size(value: str | None) -> int | str | None:
    if value is None or value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"--batch-size: expected a positive integer or auto, got '{value}'")
    return int(value)


def _parse_options(pairs: list[str], flag: str) -> dict[str, Any]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{flag}: expected KEY=VALUE, got '{pair}'")
        options[key.strip()] = yaml.safe_load(value) if value else ""
    return options


def _quiet_libraries(verbose: bool) -> None:
    """Keep lm-eval's and the hub libraries' per-step bars and info logs off the terminal: our bar
    shows progress. Warnings still show unless --quiet."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "warning" if verbose else "error")
    level = logging.WARNING if verbose else logging.ERROR
    for name in ("lm_eval", "datasets", "transformers", "suites", "harness"):
        logging.getLogger(name).setLevel(level)
