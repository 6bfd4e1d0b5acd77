"""The `mt_bench` and `vicuna_bench` suites: generate answers, grade them with an LLM judge behind an
OpenAI-compatible endpoint, store answers, judgments, per-item scores and the suite's means.

`prepare` reads and checks questions, reference answers and judge prompts (no model, no network);
`JudgedPlan.run` generates (reusing stored answers), judges (reusing cached judgments, so a killed
run resumes without paying twice) and scores. One benchmark per suite, named after it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator

from harness.errors import UserError
from harness.evaluate.protocols import BenchmarkResult, PluginOptions, SuiteContext
from harness.report.table import Column, PaperTable
from suites.judged.judge_client import JudgeClient, JudgeConfig, run_bounded
from suites.judged.judge_prompts import JudgePrompt, load_judge_prompts, needs_reference, prompt_name
from suites.judged.questions import (
    Question,
    default_reference_file,
    load_questions,
    load_reference_answers,
    with_references,
)

if TYPE_CHECKING:
    from lm_eval.api.model import LM

    from harness.store import ResultsStore
    from harness.store.judgments import Judgment
    from suites.judged.generation import Answer
    from suites.judged.scoring import JudgeJob

JUDGE_TEMPERATURE = 0.0
OFFICIAL_QUESTIONS = {"mt_bench": 80, "vicuna_bench": 80}  # FastChat's question.jsonl of each


class JudgedOptions(PluginOptions):
    """Paths are read by `prepare` (relative to where the eval runs: an experiment's directory in a pipeline)."""

    questions: str | None = Field(None, description=(
        "FastChat question.jsonl (or its data/<bench>/ directory), or a hub dataset id with its columns."))
    reference_answers: Path | None = Field(None, description=(
        "FastChat reference answers (reference_answer/gpt-4.jsonl); default: the one beside a local question "
        "file, else each question's own 'reference'."))
    judge_url: str | None = Field(None, description="OpenAI-compatible API base of the judge, "
                                                    "e.g. http://127.0.0.1:8000/v1.")
    judge_serve: str | None = Field(None, description=(
        "Instead of judge_url: a model (hub id, directory, checkpoint or builtin:tiny-llama) that atax serves "
        "on a free loopback port while judging, under the name judge_model (CPU tests), or "
        "builtin:reference-judge: not a model, a grader of token F1 against each reference (the quick start)."))
    judge_model: str = Field(min_length=1, description="Model name the judge endpoint serves.")
    judge_api_key_env: str = Field("OPENAI_API_KEY", min_length=1, description=(
        "Environment variable holding the judge's API key (read at run time, never stored; unset = no key)."))
    reference_guided: Literal["categories", "all"] = Field("categories", description=(
        "Which questions are judged with the reference-guided prompt: categories = FastChat's (math, reasoning, "
        "coding); all = every question (each then needs a reference, e.g. a strong model's answers given as "
        "reference_answers, as builtin:reference-judge grades only against references)."))
    judge_prompts: Path | None = Field(None, description=(
        "FastChat judge_prompts.jsonl, to reproduce official numbers; default: atax's own prompts."))
    judge_repeats: int = Field(1, ge=1, le=15, description="Judge each answer N times; the median counts.")
    judge_max_tokens: int = Field(2048, ge=16, description="max_tokens of each judge request (FastChat: 2048).")
    template: Literal["auto", "alpaca", "chat"] = Field("auto", description=(
        "Prompt template of the answers; auto = the checkpoint's training template (Alpaca for plain models)."))
    max_new_tokens: int = Field(1024, ge=1, validation_alias=AliasChoices("max_new_tokens", "max_gen_toks"),
                                description="Most new tokens per answer (FastChat: 1024).")
    second_turn: bool = Field(False, description="Also answer and judge the second turn (MT-bench).")
    limit: int | None = Field(None, ge=1, description="Only the first N questions (quick checks, not for reporting).")
    concurrency: int = Field(8, ge=1, le=256, description="Judge requests in flight at once.")
    timeout_s: float = Field(120.0, gt=0, le=3600, description=(
        "Seconds one judge request may take in all (connect, wait, read); then it is retried."))
    max_reply_mb: float = Field(4.0, gt=0, le=256, description="Largest judge reply accepted, in MiB.")
    max_retries: int = Field(5, ge=0, le=20, description="Retries on timeouts, 429 and 5xx (exponential backoff).")
    backoff_s: float = Field(1.0, ge=0, le=60, description="First retry delay in seconds; doubles each retry.")
    seed: int = Field(0, description="Seed for sampled answers (temperature > 0).")
    rating: Literal["final", "fastchat"] = Field("final", description=(
        "How a judgment's rating is read: final = the judge's final verdict, code it quotes ignored, 1-10 only; "
        "fastchat = FastChat's show_result exactly (first [[x]], else first [x], any value)."))

    @model_validator(mode="after")
    def _one_judge(self) -> JudgedOptions:
        if (self.judge_url is None) == (self.judge_serve is None):
            raise ValueError("give exactly one of judge_url (an endpoint) or judge_serve (a model atax serves)")
        return self

    @field_validator("judge_url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"'{url}' is not an http(s) URL; give the API base, e.g. http://127.0.0.1:8000/v1")
        return url


class MTBenchOptions(JudgedOptions):
    questions: str | None = Field("lighteval/mt-bench", description=(
        "FastChat question.jsonl (or data/mt_bench/), or a hub dataset id with FastChat's columns."))


# The paper's Table 3 (instruction following): MT-bench and Vicuna-bench share it.
INSTRUCTION_TITLE = "Instruction following (Table 3 layout)"


class MTBenchSuite:
    version: ClassVar[str] = "1"  # bump when its behaviour changes: part of the keys of its jobs
    description: ClassVar[str] = ("MT-bench (80 questions, first turn; second optional), single-answer grading by "
                                  "an LLM judge behind an OpenAI-compatible endpoint.")
    Options: ClassVar[type[MTBenchOptions]] = MTBenchOptions
    paper_table: ClassVar[PaperTable] = PaperTable("instruction", INSTRUCTION_TITLE, (
        Column("mt_bench", "MT-bench", scale=1, aliases=("mt_bench_first_turn", "mtbench_turn1")),), position=3)

    def prepare(self, options: MTBenchOptions, ctx: SuiteContext) -> JudgedPlan:
        return prepare_judged("mt_bench", options, ctx)


class VicunaBenchSuite:
    version: ClassVar[str] = "1"  # bump when its behaviour changes: part of the keys of its jobs
    description: ClassVar[str] = ("Vicuna-bench (80 questions), single-answer grading by an LLM judge behind an "
                                  "OpenAI-compatible endpoint.")
    Options: ClassVar[type[JudgedOptions]] = JudgedOptions
    paper_table: ClassVar[PaperTable] = PaperTable("instruction", INSTRUCTION_TITLE, (
        Column("vicuna_bench", "Vicuna-bench", scale=1, aliases=("vicuna",)),), position=3)

    def prepare(self, options: JudgedOptions, ctx: SuiteContext) -> JudgedPlan:
        return prepare_judged("vicuna_bench", options, ctx)


def prepare_judged(suite: str, options: JudgedOptions, ctx: SuiteContext) -> JudgedPlan:
    if options.questions is None:
        raise UserError(f"{suite}: no questions given; pass --questions PATH (FastChat's data/{suite}/question.jsonl)")
    loaded = load_questions(options.questions)
    questions = loaded.questions[:options.limit] if options.limit else loaded.questions
    reference_file = options.reference_answers or default_reference_file(loaded)
    answers = load_reference_answers(reference_file) if reference_file else None
    questions = with_references(questions, answers)
    everywhere = options.reference_guided == "all"
    turns = [(q, 1) for q in questions] + [(q, 2) for q in questions if options.second_turn and len(q.turns) > 1]
    lacking = [f"{q.question_id} ({q.category})" for q, turn in turns
               if needs_reference(q.category, everywhere) and len(q.reference) < turn]
    if lacking:
        raise UserError(f"{suite}: question {', '.join(lacking[:5])}{', ...' if len(lacking) > 5 else ''} is graded "
                        "against a reference answer but has none; pass reference_answers=PATH (FastChat's "
                        "reference_answer/gpt-4.jsonl)")
    needed = {prompt_name(q.category, t, everywhere) for q, t in turns}
    prompts, prompts_meta = load_judge_prompts(options.judge_prompts, needed)
    JudgeClient(_judge_config(options, None))  # a malformed URL fails here, before any model loads
    if options.second_turn and not any(t == 2 for _, t in turns):
        ctx.log(f"{suite}: no question has a second turn; judging turn 1 only")
    meta = {"questions": loaded.meta, "n_questions": len(questions), "data": {"completeness": _completeness(suite, len(questions))},
            "reference_answers": str(reference_file) if reference_file else "from questions",
            "judge_prompts": prompts_meta}
    return JudgedPlan(suite, options, questions, prompts, meta, {q.question_id for q in loaded.questions})


def _completeness(suite: str, n: int) -> dict[str, Any]:
    """As the knowledge suite records it: the questions judged against the official set's size."""
    of = OFFICIAL_QUESTIONS[suite]
    status = "complete" if n == of else "partial" if n < of else "not official"
    text = {"complete": f"complete ({n} questions)", "partial": f"partial ({n} of {of} questions)"}.get(
        status, f"not the official question set ({n} questions; FastChat's has {of})")
    return {"status": status, "n": n, "of": of, "unit": "questions", "text": text}


def _judge_config(options: JudgedOptions, api_key: str | None, url: str | None = None) -> JudgeConfig:
    return JudgeConfig(url or options.judge_url or "http://127.0.0.1/v1", options.judge_model, options.judge_api_key_env,
                       api_key, options.timeout_s, options.max_retries, options.backoff_s, options.judge_max_tokens,
                       JUDGE_TEMPERATURE, int(options.max_reply_mb * 2**20))


@dataclass
class JudgedPlan:
    suite: str
    options: JudgedOptions
    questions: list[Question]
    prompts: dict[str, JudgePrompt]
    meta: dict[str, Any]
    known_ids: set[str] = field(default_factory=set)  # every question id of the file, --limit or not
    tasks: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.tasks = {self.suite: self.suite}

    def run(self, lm: LM, ctx: SuiteContext) -> list[BenchmarkResult]:
        from harness.store import ResultsStore
        from suites.judged.recorded import recorded_source

        if ctx.target is None or ctx.results_dir is None:
            raise ValueError(f"{self.suite} needs ctx.target and ctx.results_dir (run it through run_eval)")
        options, recorded = self.options, recorded_source(lm)
        with ResultsStore.open(ctx.results_dir) as store:
            if recorded is None:
                answers, answer_meta = self._generate(lm, store, ctx)
            else:
                from suites.judged.recorded import recorded_answers

                turn_answers, where = recorded
                answers = recorded_answers(self.questions, turn_answers(self.suite), options.second_turn,
                                           self.known_ids, where)
                answer_meta = {"answers": {"source": where, "recorded": True}}
                ctx.log(f"{self.suite}: judging the answers recorded in {where}")
            jobs, judged, sent = self._judge(answers, store, ctx)
        from suites.judged.scoring import items_and_scores

        items, scores = items_and_scores(self.questions, answers, jobs, judged, options.rating)
        values = {s.metric: s.value for s in scores}
        ctx.log(f"{self.suite}: {int(values['n_missing'])} of {len(answers[1])} turn-1 judgments had no usable "
                f"rating (missing, not counted; ratings read as '{options.rating}')")
        meta = {**self.meta, **answer_meta, "suite_options": options.model_dump(mode="json"),
                "rating": options.rating,
                "judge": {"url": options.judge_url, "serve": options.judge_serve, "model": options.judge_model,
                          "temperature": JUDGE_TEMPERATURE, "max_tokens": options.judge_max_tokens,
                          "repeats": options.judge_repeats, "api_key_env": options.judge_api_key_env},
                "judge_requests_sent": sent, "judgments_reused": len(jobs) - sent,
                "answers_reused": sum(a.reused for turn in answers.values() for a in turn.values())}
        return [BenchmarkResult(self.suite, "score", scores, items, meta)]

    def _generate(self, lm: LM, store: ResultsStore,
                  ctx: SuiteContext) -> tuple[dict[int, dict[str, Answer]], dict[str, Any]]:
        """The model's answers with its training template, stored answers reused."""
        from suites.judged.generation import answer_turn, training_template

        assert ctx.target is not None
        options = self.options
        template, why = training_template(ctx.target, options.template)
        ctx.log(f"{self.suite}: answering with the {template} template ({why})")
        common = {"suite": self.suite, "template": template, "max_new_tokens": options.max_new_tokens,
                  "seed": options.seed, "store": store, "target": ctx.target}
        answers = {1: answer_turn(lm, self.questions, 1, {}, **common)}
        second = [q for q in self.questions if options.second_turn and len(q.turns) > 1]
        if second:
            earlier = {qid: [a.text] for qid, a in answers[1].items()}
            answers[2] = answer_turn(lm, second, 2, earlier, **common)
        return answers, {"template": template, "template_source": why}

    def _judge(self, answers: dict[int, dict[str, Answer]], store: ResultsStore,
               ctx: SuiteContext) -> tuple[list[JudgeJob], dict[tuple[str, int], Judgment], int]:
        """Judge every answer, cached judgments first; each new one is stored as it arrives."""
        from harness.store import judgments
        from suites.judged.parsing import parse_rating
        from suites.judged.scoring import judge_jobs

        options = self.options
        jobs = judge_jobs(self.questions, answers, self.prompts, options.judge_repeats, JUDGE_TEMPERATURE,
                          options.judge_max_tokens, options.reference_guided == "all")
        cached = judgments.cached_judgments(store, options.judge_model, [j.prompt_hash for j in jobs])
        todo = [job for job in jobs if (job.prompt_hash, job.repeat) not in cached]
        label = f"{self.suite} judge"
        ctx.log(f"{self.suite}: {len(jobs) - len(todo)} of {len(jobs)} judgments cached; sending {len(todo)} to "
                f"{options.judge_model} at {options.judge_url}")
        api_key = os.environ.get(options.judge_api_key_env) or None
        done = len(jobs) - len(todo)
        ctx.on_progress(label, done, len(jobs))

        def keep(job: JudgeJob, text: str) -> None:
            nonlocal done
            record = judgments.Judgment(options.judge_model, job.prompt_hash, job.repeat, job.prompt_json, text,
                                        parse_rating(text))
            judgments.add_judgment(store, record)
            cached[(job.prompt_hash, job.repeat)] = record
            done += 1
            ctx.on_progress(label, done, len(jobs))

        if todo:
            with _judge_endpoint(options) as url:
                client = JudgeClient(_judge_config(options, api_key, url))
                run_bounded(todo, lambda job: client.complete(job.messages), keep, options.concurrency)
        return jobs, cached, len(todo)


@contextlib.contextmanager
def _judge_endpoint(options: JudgedOptions) -> Iterator[str]:
    """The judge's API base: the configured URL, or a local `atax serve` for the duration."""
    if options.judge_serve is None:
        yield str(options.judge_url)
        return
    from harness.evaluate.local_judge import served_here

    with served_here(options.judge_serve, options.judge_model, options.judge_max_tokens) as url:
        yield url
