"""A client for any OpenAI-compatible chat-completions endpoint (a hosted API, `vllm serve`,
`atax serve`), stdlib only: retries with exponential backoff on timeouts, dropped connections,
429 and 5xx; a clear one-line UserError for everything else and once retries run out.

The API key comes from an environment variable at call time and appears in no error, log or
stored record.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from harness.errors import UserError
from harness.evaluate.local_judge import is_loopback

_MAX_DELAY_S = 60.0
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
T = TypeVar("T")


@dataclass(frozen=True)
class JudgeConfig:
    url: str  # the API base, e.g. http://127.0.0.1:8000/v1 (`/chat/completions` is appended)
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    api_key: str | None = None  # read from api_key_env by the caller; never stored
    timeout_s: float = 120.0
    max_retries: int = 5
    backoff_s: float = 1.0
    max_tokens: int = 2048
    temperature: float = 0.0


class _Retryable(Exception):
    """A failure worth another try; `message` is what the user sees if the tries run out."""

    def __init__(self, message: str, delay_s: float | None = None) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class JudgeClient:
    """Sends one chat-completions request per call; safe to share across threads."""

    def __init__(self, config: JudgeConfig) -> None:
        self.config = config
        base = config.url.rstrip("/")
        self.endpoint = base if base.endswith("/chat/completions") else f"{base}/chat/completions"
        parsed = urllib.parse.urlparse(self.endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise UserError(f"judge_url: '{config.url}' is not an http(s) URL; give the API base, "
                            "e.g. http://127.0.0.1:8000/v1")
        # Proxies from the environment serve hosted APIs; a loopback judge must never go through one.
        handlers = [urllib.request.ProxyHandler({})] if is_loopback(parsed.hostname) else []
        self._opener = urllib.request.build_opener(*handlers)

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The judge's reply text; UserError once the request cannot succeed or retries are spent."""
        body = json.dumps({"model": self.config.model, "messages": messages, "temperature": self.config.temperature,
                           "max_tokens": self.config.max_tokens}).encode("utf-8")
        tries = self.config.max_retries + 1
        for attempt in range(tries):
            try:
                return self._post(body)
            except _Retryable as exc:
                if attempt == tries - 1:
                    raise UserError(f"{exc} after {tries} tr{'y' if tries == 1 else 'ies'}") from None
                delay = self.config.backoff_s * 2 ** attempt
                time.sleep(min(exc.delay_s if exc.delay_s is not None else delay, _MAX_DELAY_S))
        raise AssertionError("unreachable")

    def _post(self, body: bytes) -> str:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        request = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.config.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc.code, exc.read(), exc.headers.get("Retry-After")) from None
        except TimeoutError:
            raise _Retryable(f"judge endpoint {self.endpoint} did not answer within {self.config.timeout_s:g}s "
                             "(raise timeout_s or check the server)") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise _Retryable(f"judge endpoint {self.endpoint} did not answer within "
                                 f"{self.config.timeout_s:g}s (raise timeout_s or check the server)") from None
            if isinstance(reason, OSError) or isinstance(reason, str):
                raise _Retryable(f"judge endpoint {self.endpoint} is not reachable ({self._scrub(str(reason))}); "
                                 "start the judge server or fix --judge-url") from None
            raise
        except (http.client.HTTPException, ConnectionError) as exc:
            raise _Retryable(f"judge endpoint {self.endpoint} dropped the connection "
                             f"({type(exc).__name__}); check the server") from None
        return self._content(raw)

    def _content(self, raw: bytes) -> str:
        try:
            payload = json.loads(raw)
            content = payload["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise UserError(f"judge endpoint {self.endpoint} did not answer in the OpenAI chat-completions format "
                            "(no choices[0].message.content); is --judge-url an OpenAI-compatible API base?") from None
        return content if isinstance(content, str) else ""  # a null content holds no rating: missing

    def _http_error(self, status: int, raw: bytes, retry_after: str | None) -> Exception:
        message = self._scrub(_server_message(raw))
        said = f"HTTP {status}: {message}" if message else f"HTTP {status}"
        if status in _RETRY_STATUS:
            delay = float(retry_after) if retry_after and retry_after.strip().isdigit() else None
            hint = "lower concurrency or try later" if status == 429 else "check the judge server's log"
            return _Retryable(f"judge endpoint {self.endpoint} failed ({said}; {hint})", delay)
        if status in (401, 403):
            env = self.config.api_key_env
            key = f"the key in ${env} was refused" if self.config.api_key else f"no API key was sent (${env} is unset)"
            return UserError(f"judge endpoint {self.endpoint} refused the request ({said}): {key}; set ${env} to a "
                             "valid key, or name another variable with judge_api_key_env")
        if status == 404 and ("model" in message.lower() or not message):
            return UserError(f"judge model '{self.config.model}' is not served at {self.endpoint} ({said}); check "
                             f"--judge-model against the server's {self.endpoint.rsplit('/chat/', 1)[0]}/models")
        if status == 404:
            return UserError(f"judge endpoint {self.endpoint} not found ({said}); --judge-url should be the API "
                             "base, e.g. http://127.0.0.1:8000/v1")
        return UserError(f"judge endpoint {self.endpoint} rejected the request ({said})")

    def _scrub(self, text: str) -> str:
        key = self.config.api_key
        return text.replace(key, "***") if key else text


def _server_message(raw: bytes) -> str:
    """The error text from an OpenAI-style (`{"error": {"message"}}`) or vLLM-style (`{"message"}`) body."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        payload = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:200]
    error = payload.get("error") if isinstance(payload, dict) else None
    message = (error.get("message") if isinstance(error, dict) else error) or \
        (payload.get("message") if isinstance(payload, dict) else None) or text
    return " ".join(str(message).split())[:200]



def run_bounded(jobs: Iterable[T], work: Callable[[T], Any], on_done: Callable[[T, Any], None],
                concurrency: int) -> None:
    """`work(job)` for every job, at most `concurrency` at once; `on_done(job, result)` runs in the
    calling thread as each finishes (so store writes stay on one connection). Jobs are started only
    as others finish, so after the first failure nothing new starts: requests in flight are let
    finish and their results kept, then the failure is raised."""
    queue = iter(jobs)
    error: BaseException | None = None
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="judge") as pool:
        in_flight: dict[Future[Any], T] = {}

        def start_next() -> None:
            job = next(queue, _END)
            if job is not _END:
                in_flight[pool.submit(work, job)] = job  # type: ignore[arg-type]

        for _ in range(max(1, concurrency)):
            start_next()
        while in_flight:
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                job = in_flight.pop(future)
                if future.exception() is not None:
                    error = error or future.exception()
                    continue
                on_done(job, future.result())
                if error is None:
                    start_next()
    if error is not None:
        raise error


_END = object()
