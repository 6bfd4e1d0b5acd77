"""The `answers` backend: score completions produced elsewhere (another machine, an API, vLLM).

The file is JSONL in one of two shapes, never mixed:
- knowledge benchmarks, one object per item: `{"benchmark": "humaneval", "doc_id": 0, "completion": "..."}`,
  where `doc_id` numbers the documents of that benchmark's evaluation split as lm-eval does. A
  benchmark made of several lm-eval tasks (BBH) also needs `"task": "<lm-eval task name>"`.
- judged suites (MT-bench, Vicuna-bench), keyed by question and turn: FastChat's model_answer lines
  `{"question_id": 81, "model_id": ..., "choices": [{"turns": ["...", "..."]}]}` as FastChat writes
  them, or one object per turn `{"question_id": 81, "turn": 1, "completion": "..."}` (optionally
  `"benchmark": "mt_bench"`). The suite asks for them with `turn_answers(suite)`.
A file of one shape given to suites of the other is refused, never scored. Completions are used
verbatim, byte for byte: nothing is stripped and stop sequences are not applied again.
Log-likelihood requests (multiple-choice benchmarks) cannot be answered from text and raise a UserError.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator

from harness.errors import UserError
from harness.evaluate.protocols import PluginOptions
from harness.jsonl import jsonl_objects

if TYPE_CHECKING:
    from lm_eval.api.instance import Instance
    from lm_eval.api.model import LM

    from harness.evaluate.target import EvalTarget


class AnswersOptions(PluginOptions):
    answers: Path = Field(description=(
        "JSONL file of completions: {benchmark, doc_id, completion[, task]} per line for knowledge benchmarks; "
        "FastChat's model_answer file or {question_id, turn, completion} per line for judged suites."))

    @field_validator("answers")
    @classmethod
    def _exists(cls, path: Path) -> Path:
        if not path.is_file():
            raise ValueError(f"file {path} not found; give the JSONL file of completions")
        return path.resolve()


class AnswersBackend:
    description: ClassVar[str] = "Replays completions from a JSONL file (no model); generation benchmarks only."
    Options: ClassVar[type[AnswersOptions]] = AnswersOptions
    cache_responses: ClassVar[bool] = False  # reading the file is the cheap part
    runs_model: ClassVar[bool] = False  # an eval job needs no GPU

    def make_lm(self, target: EvalTarget, options: AnswersOptions, tasks: Mapping[str, str]) -> LM:
        first = next(jsonl_objects(options.answers), None)
        if first is not None and not _is_turn_row(first[1]):
            read_answers(options.answers, tasks)  # knowledge completions: a malformed row fails now, before lm-eval
        return make_answers_lm(options.answers, tasks)


KNOWLEDGE_SHAPE = "{benchmark, doc_id, completion}"
TURNS_SHAPE = ("FastChat's model_answer lines {question_id, choices: [{turns: [...]}]} or "
               "{question_id, turn, completion}")


def _is_turn_row(row: dict[str, Any]) -> bool:
    return "question_id" in row and "doc_id" not in row


def read_answers(path: Path, tasks: Mapping[str, str]) -> dict[tuple[str, int], str]:
    """(lm-eval task, doc_id) -> completion, for rows whose benchmark is in this run."""
    tasks_of: dict[str, list[str]] = defaultdict(list)
    for task, benchmark in tasks.items():
        tasks_of[benchmark].append(task)
    found: dict[tuple[str, int], str] = {}
    for line_no, row in jsonl_objects(path, "a JSON object with benchmark, doc_id, completion"):
        where = f"{path}:{line_no}"
        if _is_turn_row(row):
            raise UserError(f"{where}: an answer keyed by question_id (a judged suite's, e.g. FastChat's "
                            f"model_answer); {', '.join(sorted(tasks_of))} need{'s' if len(tasks_of) == 1 else ''} "
                            f"completions keyed by doc_id: {KNOWLEDGE_SHAPE} per line")
        benchmark, doc_id, completion = row.get("benchmark"), row.get("doc_id"), row.get("completion")
        if not isinstance(benchmark, str) or not isinstance(doc_id, int) or isinstance(doc_id, bool) \
                or not isinstance(completion, str):
            raise UserError(f"{where}: needs \"benchmark\" (string), \"doc_id\" (integer) and "
                            "\"completion\" (string)")
        if benchmark not in tasks_of:
            continue  # answers for benchmarks not asked for in this run
        task = row.get("task")
        if task is None:
            if len(tasks_of[benchmark]) != 1:
                raise UserError(f"{where}: benchmark '{benchmark}' has several lm-eval tasks; add "
                                f"\"task\" (one of {', '.join(sorted(tasks_of[benchmark])[:3])}, ...)")
            task = tasks_of[benchmark][0]
        elif task not in tasks_of[benchmark]:
            raise UserError(f"{where}: task '{task}' is not part of benchmark '{benchmark}'; use an lm-eval "
                            f"task name such as {sorted(tasks_of[benchmark])[0]}")
        if (task, doc_id) in found:
            raise UserError(f"{where}: second completion for {benchmark} task {task} doc_id {doc_id}; "
                            "keep one per item")
        found[(task, doc_id)] = completion
    return found


def read_turn_answers(path: Path, suite: str) -> dict[str, dict[int, str]]:
    """question_id -> {turn: answer text}, from FastChat's model_answer format or {question_id, turn,
    completion} lines; rows naming another benchmark are skipped, knowledge completions refused."""
    found: dict[str, dict[int, str]] = {}
    for line_no, row in jsonl_objects(path, f"a JSON object: {TURNS_SHAPE}"):
        where = f"{path}:{line_no}"
        if not _is_turn_row(row):
            raise UserError(f"{where}: not an answer keyed by question_id (a knowledge-benchmark completion "
                            f"{KNOWLEDGE_SHAPE}?); {suite} needs {TURNS_SHAPE}")
        if row.get("benchmark", suite) != suite:
            continue
        qid = row["question_id"]
        if isinstance(qid, bool) or not isinstance(qid, (int, str)) or str(qid).strip() == "":
            raise UserError(f"{where}: \"question_id\" must be an integer or a string")
        turns = _row_turns(row, where)
        known = found.setdefault(str(qid), {})
        if set(turns) & set(known):
            raise UserError(f"{where}: second answer for question_id {qid} turn {min(set(turns) & set(known))}; "
                            "keep one per question and turn")
        known.update(turns)
    return found


def _row_turns(row: dict[str, Any], where: str) -> dict[int, str]:
    if "choices" in row:
        choices = row["choices"]
        turns = choices[0].get("turns") if isinstance(choices, list) and choices and isinstance(choices[0], dict) \
            else None
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise UserError(f"{where}: \"choices\" must be FastChat's [{{\"turns\": [\"...\", ...]}}] "
                            "(a non-empty list of strings)")
        return {n: text for n, text in enumerate(turns, 1)}  # FastChat judges choices[0]
    turn, completion = row.get("turn"), row.get("completion")
    if isinstance(turn, bool) or not isinstance(turn, int) or turn < 1 or not isinstance(completion, str):
        raise UserError(f"{where}: needs \"turn\" (1, 2, ...) and \"completion\" (string), or FastChat's "
                        "\"choices\"")
    return {turn: completion}


def make_answers_lm(path: Path, tasks: Mapping[str, str]) -> LM:
    from lm_eval.api.model import LM

    class AnswersLM(LM):
        """An lm-eval LM whose generations are looked up, not computed."""

        def __init__(self) -> None:
            super().__init__()
            self.path = path
            self.tasks = dict(tasks)
            self._answers: dict[tuple[str, int], str] | None = None

        @property
        def answers(self) -> dict[tuple[str, int], str]:
            # Read on first use: a judged suite asks for turn_answers instead and never generates.
            if self._answers is None:
                self._answers = read_answers(self.path, self.tasks)
            return self._answers

        def turn_answers(self, suite: str) -> dict[str, dict[int, str]]:
            """question_id -> {turn: text}, for a judged suite (see read_turn_answers)."""
            return read_turn_answers(self.path, suite)

        def generate_until(self, requests: list[Instance]) -> list[str]:
            missing: dict[str, list[int]] = defaultdict(list)
            totals: dict[str, int] = defaultdict(int)
            out = []
            for request in requests:
                benchmark = self.tasks.get(request.task_name, request.task_name)
                totals[benchmark] += 1
                completion = self.answers.get((request.task_name, request.doc_id))
                if completion is None:
                    missing[benchmark].append(request.doc_id)
                out.append(completion or "")
            if missing:
                benchmark, doc_ids = next(iter(missing.items()))
                shown = ", ".join(str(d) for d in sorted(set(doc_ids))[:5])
                more = ", ..." if len(set(doc_ids)) > 5 else ""
                raise UserError(f"{self.path}: {len(doc_ids)} of {totals[benchmark]} {benchmark} items have no "
                                f"completion (doc_id {shown}{more}); add them or leave {benchmark} out of --benchmarks")
            return out

        def loglikelihood(self, requests: list[Instance]) -> list[Any]:
            self._no_loglikelihood(requests)
            return []

        def loglikelihood_rolling(self, requests: list[Instance]) -> list[Any]:
            self._no_loglikelihood(requests)
            return []

        def _no_loglikelihood(self, requests: list[Instance]) -> None:
            names = sorted({self.tasks.get(r.task_name, r.task_name) for r in requests})
            raise UserError(f"the answers backend replays completions and cannot score log-likelihoods, which "
                            f"{', '.join(names)} need (multiple choice); evaluate those with --backend hf")

    return AnswersLM()
