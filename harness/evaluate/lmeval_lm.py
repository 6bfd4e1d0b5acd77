"""The LM wrapper every lm-eval run goes through: response cache keyed by the model, and progress.

lm-eval's own `use_cache` keys a response by the request alone, never by the model, so two
checkpoints sharing one cache file silently share answers. Here the cache file is named by the
target's content hash (plus backend and its output-relevant options), one file per model.

The wrapper also sends each benchmark's requests to the model as one call, so progress can be
reported per benchmark (the backend's own per-call bars are switched off); within a call the
backend still batches and sorts as it likes. Cache entries use lm-eval's own key function, so a
file is as readable by lm-eval as one it wrote, and partial results survive a crash (the backend
writes each response through lm-eval's cache hook as it comes).
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lm_eval.api.model import LM, CacheHook, hash_args

from harness import registry
from harness.keys import content_key
from harness.paths import cache_dir

if TYPE_CHECKING:
    from lm_eval.api.instance import Instance

    from harness.evaluate.target import EvalTarget

_REQUEST_TYPES = ("loglikelihood", "loglikelihood_rolling", "generate_until")
# Options that change how fast answers come, not what they are: left out of the cache key.
_SPEED_ONLY_OPTIONS = frozenset({"batch_size", "max_batch_size", "prefix_cache", "generation_rows", "token_budget"})


def response_cache_path(target: EvalTarget, backend: str, options: dict[str, Any]) -> Path:
    """Where this target's responses are cached (lm-eval appends `_rank<N>.db`): per model, backend, its
    code version (a fixed engine must not replay its old answers) and output-relevant options."""
    relevant = {k: v for k, v in options.items() if k not in _SPEED_ONLY_OPTIONS}
    key = content_key({"target": target.content_hash, "backend": backend, "options": relevant,
                       "version": registry.plugin_version("backend", backend)}, length=24)
    return cache_dir() / "lm-eval-responses" / key


class TrackedLM(LM):
    """Delegates to `inner`, one benchmark at a time, answering from the response cache where it can
    and reporting `on_progress(benchmark, done, total)`."""

    def __init__(self, inner: LM, tasks: Mapping[str, str], on_progress: Callable[[str, int, int], None],
                 cache_db: Path | None = None) -> None:
        super().__init__()
        self.inner = inner
        self._tasks = dict(tasks)
        self._on_progress = on_progress
        self._cache: Any = None
        if cache_db is not None:
            from sqlitedict import SqliteDict

            Path(cache_db).parent.mkdir(parents=True, exist_ok=True)
            self._cache = SqliteDict(f"{cache_db}_rank{inner.rank}.db", autocommit=True)
            hook = CacheHook(None)
            hook.dbdict = self._cache
            inner.set_cache_hook(hook)
        self._done: Counter[str] = Counter()
        self._total: Counter[str] = Counter()

    def loglikelihood(self, requests: list[Instance]) -> list[Any]:
        return self._run("loglikelihood", requests)

    def loglikelihood_rolling(self, requests: list[Instance]) -> list[Any]:
        return self._run("loglikelihood_rolling", requests)

    def generate_until(self, requests: list[Instance]) -> list[Any]:
        return self._run("generate_until", requests)

    def _run(self, request_type: str, requests: list[Instance]) -> list[Any]:
        by_benchmark: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            benchmark = self._tasks.get(request.task_name, request.task_name)
            by_benchmark.setdefault(benchmark, []).append(index)
        for benchmark, indices in by_benchmark.items():
            self._total[benchmark] += len(indices)
            self._on_progress(benchmark, self._done[benchmark], self._total[benchmark])
        responses: list[Any] = [None] * len(requests)
        for benchmark, indices in by_benchmark.items():
            answers = self._answer(request_type, [requests[i] for i in indices])
            for index, answer in zip(indices, answers, strict=True):
                responses[index] = answer
            self._done[benchmark] += len(indices)
            self._on_progress(benchmark, self._done[benchmark], self._total[benchmark])
        return responses

    def _answer(self, request_type: str, requests: list[Instance]) -> list[Any]:
        """Cached responses where present, the backend's for the rest (sampled ones never cached)."""
        keys = [None if self._cache is None or _samples(request_type, r) else hash_args(request_type, r.args)
                for r in requests]
        answers: list[Any] = [self._cache.get(k) if k is not None else None for k in keys]
        todo = [i for i, answer in enumerate(answers) if answer is None]
        if todo:
            method = getattr(self.inner, request_type)
            kwargs = {"disable_tqdm": True} if "disable_tqdm" in inspect.signature(method).parameters else {}
            for i, answer in zip(todo, method([requests[i] for i in todo], **kwargs), strict=True):
                answers[i] = answer
                if keys[i] is not None:
                    self._cache[keys[i]] = answer
        return answers

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    # simple_evaluate and lm-eval's loggers read these from the model it is given.
    @property
    def rank(self) -> int:
        return self.inner.rank

    @property
    def world_size(self) -> int:
        return self.inner.world_size

    @property
    def tokenizer_name(self) -> str:
        return self.inner.tokenizer_name

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.inner.apply_chat_template(chat_history, add_generation_prompt)

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.inner.chat_template(chat_template)

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found normally: tokenizer, device, get_model_info, ...
        if name in ("inner", "_cache") or name in _REQUEST_TYPES:
            raise AttributeError(name)
        return getattr(self.inner, name)


def _samples(request_type: str, request: Instance) -> bool:
    # As lm-eval's CachingLM: a sampled generation must not be replayed for every repeat.
    return request_type == "generate_until" and bool(request.args[1].get("do_sample", False))
