"""The `answers` backend: score completions produced elsewhere (another machine, an API, vLLM).

The file is JSONL, one object per item: `{"benchmark": "humaneval", "doc_id": 0, "completion": "..."}`,
where `doc_id` numbers the documents of that benchmark's evaluation split as lm-eval does. A
benchmark made of several lm-eval tasks (BBH) also needs `"task": "<lm-eval task name>"`.
Completions are used verbatim: stop sequences are not applied again. Log-likelihood requests
(multiple-choice benchmarks) cannot be answered from text and raise a UserError.
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
    answers: Path = Field(description="JSONL file of completions: {benchmark, doc_id, completion[, task]} per line.")

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

    def make_lm(self, target: EvalTarget, options: AnswersOptions, tasks: Mapping[str, str]) -> LM:
        return make_answers_lm(options.answers, tasks)


def read_answers(path: Path, tasks: Mapping[str, str]) -> dict[tuple[str, int], str]:
    """(lm-eval task, doc_id) -> completion, for rows whose benchmark is in this run."""
    tasks_of: dict[str, list[str]] = defaultdict(list)
    for task, benchmark in tasks.items():
        tasks_of[benchmark].append(task)
    found: dict[tuple[str, int], str] = {}
    for line_no, row in jsonl_objects(path, "a JSON object with benchmark, doc_id, completion"):
        where = f"{path}:{line_no}"
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


def make_answers_lm(path: Path, tasks: Mapping[str, str]) -> LM:
    from lm_eval.api.model import LM

    class AnswersLM(LM):
        """An lm-eval LM whose generations are looked up, not computed."""

        def __init__(self) -> None:
            super().__init__()
            self.path = path
            self.tasks = dict(tasks)
            self.answers = read_answers(path, tasks)

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
