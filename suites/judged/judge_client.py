"""A client for any OpenAI-compatible chat-completions endpoint (a hosted API, `vllm serve`,
`atax serve`), stdlib only: retries with exponential backoff on timeouts, dropped connections,
429 and 5xx; a clear one-line UserError for everything else and once retries run out.

Each try has a total deadline (`timeout_s`: connect, wait and read together; a server that
trickles a byte at a time is cut off, not waited on forever) and a reply size cap.

The API key comes from an environment variable at call time and appears in no error, log or
stored record.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import socket
import threading
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
    max_reply_bytes: int = 4 * 2**20  # a judgment is a few KB; a bigger reply is a broken or hostile server


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
        self._handlers = [urllib.request.ProxyHandler({})] if is_loopback(parsed.hostname) else []

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
        late = _Retryable(f"judge endpoint {self.endpoint} did not answer within {self.config.timeout_s:g}s "
                          "(raise timeout_s or check the server)")
        with _Deadline(self.config.timeout_s) as deadline:
            opener = urllib.request.build_opener(*self._handlers, _WatchedHTTPHandler(deadline),
                                                 _WatchedHTTPSHandler(deadline))
            try:
                with opener.open(request, timeout=self.config.timeout_s) as response:
                    raw = self._read_capped(response)
            except urllib.error.HTTPError as exc:
                raise self._http_error(exc.code, exc.read(64 * 1024), exc.headers.get("Retry-After")) from None
            except (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                if deadline.expired or isinstance(exc, TimeoutError) or \
                        isinstance(getattr(exc, "reason", None), TimeoutError):
                    raise late from None
                reason = getattr(exc, "reason", None)
                if isinstance(reason, (OSError, str)):
                    raise _Retryable(f"judge endpoint {self.endpoint} is not reachable "
                                     f"({self._scrub(str(reason))}); start the judge server or fix --judge-url") from None
                raise _Retryable(f"judge endpoint {self.endpoint} dropped the connection "
                                 f"({type(exc).__name__}); check the server") from None
            if deadline.expired:
                raise late
        return self._content(raw)

    def _read_capped(self, response: http.client.HTTPResponse) -> bytes:
        """The body, refused once larger than max_reply_bytes (read in pieces: one blocking read never
        waits for more than what has arrived, so the deadline can cut a trickle short)."""
        cap = self.config.max_reply_bytes
        length = response.headers.get("Content-Length", "")
        too_big = UserError(f"judge endpoint {self.endpoint} sent a reply over {cap} bytes; a judgment is a few KB: "
                            "check the server (or raise max_reply_mb)")
        if length.strip().isdigit() and int(length) > cap:
            raise too_big
        parts, size = [], 0
        while chunk := response.read1(64 * 1024):
            size += len(chunk)
            if size > cap:
                raise too_big
            parts.append(chunk)
        return b"".join(parts)

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


class _Deadline:
    """Ends one request at a wall-clock deadline by shutting its socket down (which wakes a blocked read)."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watched:
    """Mixed into an http.client connection: its socket is handed to the deadline once connected."""

    def __init__(self, *args: Any, deadline: _Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline = deadline

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._deadline.watch(self.sock)  # type: ignore[attr-defined]


class _WatchedHTTP(_Watched, http.client.HTTPConnection):
    pass


class _WatchedHTTPS(_Watched, http.client.HTTPSConnection):
    pass


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_WatchedHTTP, deadline=self._deadline), req)  # type: ignore[arg-type]


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_WatchedHTTPS, deadline=self._deadline), req,  # type: ignore[arg-type]
                            context=self._context)
