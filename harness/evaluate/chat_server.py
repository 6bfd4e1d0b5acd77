"""A small OpenAI-compatible chat-completions server over the `hf` backend (`atax serve`): a local
judge for CPU tests and for users without an API. Users with a GPU serve judges with `vllm serve`.

Endpoints: `POST /v1/chat/completions` (non-streaming; greedy at temperature 0), `GET /v1/models`,
`GET /health`, and `GET /stats` (requests answered and a hash of each one's messages, so tests can
count what reached the server). One generation runs at a time; connections are threaded.

Bounded for hostile or careless clients: a body over `max_body_bytes` or a prompt over
`max_prompt_tokens` (the model's context by default) is a 400 before any generation; at most
`max_queue` completions wait or run (503 with Retry-After beyond); malformed requests are 400s;
a client that disconnects stops its generation at the next token and leaves no traceback.
"""

from __future__ import annotations

import hashlib
import json
import math
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_MAX_BODY_BYTES = 4 << 20
DEFAULT_MAX_QUEUE = 64
_SOCKET_TIMEOUT_S = 60  # a client that stops sending mid-request holds a thread no longer than this


def messages_hash(messages: list[dict[str, Any]]) -> str:
    """sha256 of the request's messages as canonical JSON (what /stats lists per answered request)."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class RequestError(Exception):
    """An OpenAI-style error answer: HTTP status, message, type and code."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.code = status, kind, code


@dataclass
class ChatModel:
    """An lm-eval LM (the hf backend's) behind a lock, with the tokenizer that renders chats.

    `max_prompt_tokens`: None = the model's context less one token for the answer."""

    lm: Any
    name: str
    max_tokens_limit: int
    max_prompt_tokens: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _chars_per_token: int | None = None

    @property
    def context(self) -> int | None:
        value = getattr(getattr(self.lm.model, "config", None), "max_position_embeddings", None)
        return value if isinstance(value, int) and value > 1 else None

    @property
    def prompt_limit(self) -> int | None:
        if self.max_prompt_tokens is not None:
            return self.max_prompt_tokens
        return self.context - 1 if self.context is not None else None

    def _most_chars_per_token(self) -> int:
        if self._chars_per_token is None:
            vocab = self.lm.tokenizer.get_vocab()
            self._chars_per_token = max((len(t) for t in vocab), default=16)
        return self._chars_per_token

    def render(self, messages: list[dict[str, str]]) -> str:
        tokenizer = self.lm.tokenizer
        if getattr(tokenizer, "chat_template", None):
            try:
                return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
            except Exception:  # a template that refuses a system turn: fold it into the first user turn
                return str(tokenizer.apply_chat_template(_fold_system(messages), tokenize=False,
                                                         add_generation_prompt=True))
        # No chat template (a base model): plain role markers, the assistant's turn left open.
        turns = [f"### {m['role'].capitalize()}:\n{m['content']}" for m in messages]
        return "\n\n".join([*turns, "### Assistant:\n"])

    def encode(self, messages: list[dict[str, str]]) -> Any:
        """The rendered prompt as model inputs; a 400 when it is longer than the prompt limit (refused by
        its length in characters before tokenizing when it cannot possibly fit)."""
        tokenizer, model = self.lm.tokenizer, self.lm.model
        prompt = self.render(messages)
        limit = self.prompt_limit
        too_long = f"the prompt is longer than this server's limit of {limit} tokens; shorten the messages"
        if limit is not None and len(prompt) > limit * self._most_chars_per_token():
            raise RequestError(400, too_long, code="context_length_exceeded")
        # A rendered chat template already starts with BOS; a plain prompt gets the tokenizer's own.
        has_bos = bool(tokenizer.bos_token) and prompt.startswith(tokenizer.bos_token)
        encoded = tokenizer(prompt, add_special_tokens=not has_bos, return_tensors="pt")
        n = int(encoded["input_ids"].shape[1])
        if limit is not None and n > limit:
            raise RequestError(400, f"the prompt is {n} tokens; this server's limit is {limit}; shorten the messages",
                               code="context_length_exceeded")
        return encoded.to(model.device)

    def complete(self, messages: list[dict[str, str]], temperature: float, max_tokens: int,
                 client_gone: Callable[[], bool] = lambda: False) -> dict[str, Any] | None:
        """The answer, or None when the client went away (while waiting or generating)."""
        import torch

        # The backend's model and tokenizer (peft adapter, dtype and device already applied), called
        # directly: one request at a time needs none of lm-eval's batching, and token counts are exact.
        tokenizer, model = self.lm.tokenizer, self.lm.model
        encoded = self.encode(messages)
        n_prompt = int(encoded["input_ids"].shape[1])
        if self.context is not None:
            max_tokens = max(1, min(max_tokens, self.context - n_prompt))
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        while not self._lock.acquire(timeout=0.25):  # waiting in the queue: leave it if the client left
            if client_gone():
                return None
        try:
            with torch.inference_mode():
                output = model.generate(**encoded, max_new_tokens=max_tokens, stopping_criteria=_stop_when(client_gone),
                                        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                                        else tokenizer.eos_token_id, **sampling)
        finally:
            self._lock.release()
        if client_gone():
            return None
        new = output[0, n_prompt:].tolist()
        stopped = bool(new) and new[-1] == tokenizer.eos_token_id
        return {"text": tokenizer.decode(new, skip_special_tokens=True),
                "prompt_tokens": n_prompt, "completion_tokens": len(new),
                "finish_reason": "stop" if stopped or len(new) < max_tokens else "length"}


def _stop_when(client_gone: Callable[[], bool]) -> Any:
    """A transformers stopping criterion: stop generating for a client that is gone."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class ClientGone(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), client_gone(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([ClientGone()])


def load_chat_model(target: str, served_name: str, max_tokens: int, *, dtype: str = "auto",
                    device: str | None = None, where: str = "atax serve",
                    max_prompt_tokens: int | None = None) -> ChatModel:
    """`target` loaded through the hf backend (adapter, dtype and device applied), ready to serve."""
    from harness.evaluate.backends.hf import HFBackend
    from harness.evaluate.runner import validate_options
    from harness.evaluate.target import resolve_target

    options = validate_options(HFBackend, {"dtype": dtype, "device": device, "batch_size": 1}, where)
    return ChatModel(HFBackend().make_lm(resolve_target(target), options, {}), served_name, max_tokens,
                     max_prompt_tokens)


def _fold_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system and rest and rest[0]["role"] == "user":
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
    return rest


class ChatServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], model: ChatModel, api_key: str | None = None,
                 quiet: bool = False, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        super().__init__(address, _Handler)
        self.model, self.api_key, self.quiet = model, api_key, quiet
        self.max_body_bytes = max_body_bytes
        self.slots = threading.BoundedSemaphore(max_queue)  # completions waiting or running
        self.stats: dict[str, Any] = {"requests": 0, "completions": 0, "errors": 0, "disconnected": 0,
                                      "prompt_hashes": []}
        self.stats_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up or stalled is not a server bug: no traceback for it.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: ChatServer
    protocol_version = "HTTP/1.1"
    timeout = _SOCKET_TIMEOUT_S

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?")[0].rstrip("/")
        if path == "/health":
            return self._send(200, {"status": "ok"})
        try:
            self._authorize()
            if path == "/stats":
                with self.server.stats_lock:
                    return self._send(200, json.loads(json.dumps(self.server.stats)))
            if path == "/v1/models":
                return self._send(200, {"object": "list", "data": [
                    {"id": self.server.model.name, "object": "model", "created": 0, "owned_by": "atax"}]})
            raise RequestError(404, f"no route GET {path}", code="not_found")
        except RequestError as exc:
            self._error(exc)

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?")[0].rstrip("/")
        try:
            body = self._body()
            self._authorize()
            if path != "/v1/chat/completions":
                raise RequestError(404, f"no route POST {path}; use /v1/chat/completions", code="not_found")
            with self.server.stats_lock:
                self.server.stats["requests"] += 1
            answer = self._queued_complete(body)
            if answer is None:
                with self.server.stats_lock:
                    self.server.stats["disconnected"] += 1
                self.close_connection = True
                return
            self._send(200, answer)
        except RequestError as exc:
            self._error(exc)
        except (ConnectionError, TimeoutError):  # the client hung up or stalled mid-request
            self.close_connection = True
        except Exception as exc:  # a bug or a failed generation: the client sees a 500 and retries
            self._error(RequestError(500, f"generation failed: {type(exc).__name__}: {exc}", "server_error"))

    def _queued_complete(self, body: dict[str, Any]) -> dict[str, Any] | None:
        if not self.server.slots.acquire(blocking=False):
            raise RequestError(503, "the server is busy (its queue is full); retry later", "server_error",
                               code="queue_full")
        try:
            return self._complete(body)
        finally:
            self.server.slots.release()

    def _client_gone(self) -> bool:
        """True once the client closed its end (readable with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        model = self.server.model
        if body.get("model") != model.name:
            raise RequestError(404, f"The model `{body.get('model')}` does not exist; this server serves "
                                    f"`{model.name}`.", code="model_not_found")
        if body.get("stream"):
            raise RequestError(400, "streaming is not supported; send stream=false")
        if body.get("n", 1) != 1:
            raise RequestError(400, "only n=1 is supported")
        messages = _messages(body.get("messages"))
        temperature = body.get("temperature", 1.0)
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        max_tokens = model.max_tokens_limit if max_tokens is None else max_tokens
        if not _is_number(temperature) or not 0 <= temperature <= 2:
            raise RequestError(400, "temperature must be a number from 0 to 2")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise RequestError(400, "max_tokens must be an integer >= 1")
        out = model.complete(messages, float(temperature), min(max_tokens, model.max_tokens_limit), self._client_gone)
        if out is None:
            return None
        with self.server.stats_lock:
            self.server.stats["completions"] += 1
            self.server.stats["prompt_hashes"].append(messages_hash(messages))
            number = self.server.stats["completions"]
        return {"id": f"chatcmpl-{number}", "object": "chat.completion", "created": int(time.time()),
                "model": model.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": out["text"]},
                             "finish_reason": out["finish_reason"]}],
                "usage": {"prompt_tokens": out["prompt_tokens"], "completion_tokens": out["completion_tokens"],
                          "total_tokens": out["prompt_tokens"] + out["completion_tokens"]}}

    def _authorize(self) -> None:
        key = self.server.api_key
        if key and self.headers.get("Authorization", "") != f"Bearer {key}":
            raise RequestError(401, "Incorrect API key provided; send 'Authorization: Bearer <key>'",
                               code="invalid_api_key")

    def _body(self) -> dict[str, Any]:
        text = (self.headers.get("Content-Length") or "").strip()
        if not text.isdigit() or int(text) == 0:
            self.close_connection = True  # the body was not read: the connection cannot carry another request
            raise RequestError(400, "send a JSON body with a numeric Content-Length")
        length = int(text)
        if length > self.server.max_body_bytes:
            self.close_connection = True
            raise RequestError(400, f"the body is {length} bytes; this server takes at most "
                                    f"{self.server.max_body_bytes}", code="body_too_large")
        raw = self.rfile.read(length)
        if len(raw) < length:
            raise ConnectionResetError("the client closed the connection mid-body")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
            raise RequestError(400, "the body is not valid JSON (or is nested too deeply)") from None
        if not isinstance(body, dict):
            raise RequestError(400, "the body must be a JSON object")
        return body

    def _error(self, exc: RequestError) -> None:
        with self.server.stats_lock:
            self.server.stats["errors"] += 1
        self._send(exc.status, {"error": {"message": str(exc), "type": exc.kind, "param": None, "code": exc.code}})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 503:
                self.send_header("Retry-After", "1")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except (ConnectionError, TimeoutError):  # the client is gone: nothing to answer, nothing to log
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        if not self.server.quiet:
            super().log_message(format, *args)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise RequestError(400, "messages must be a non-empty list of {role, content}")
    out = []
    for message in value:
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise RequestError(400, "each message needs a role of system, user or assistant")
        content = message.get("content")
        if isinstance(content, list):  # OpenAI content parts: only text can be served here
            if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
                raise RequestError(400, "only text content parts are supported")
            content = "".join(str(p.get("text", "")) for p in content)
        if not isinstance(content, str):
            raise RequestError(400, "message content must be a string")
        out.append({"role": message["role"], "content": content})
    return out
