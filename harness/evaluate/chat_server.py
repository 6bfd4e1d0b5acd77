"""A small OpenAI-compatible chat-completions server over the `hf` backend (`atax serve`): a local
judge for CPU tests and for users without an API. Users with a GPU serve judges with `vllm serve`.

Endpoints: `POST /v1/chat/completions` (non-streaming; greedy at temperature 0), `GET /v1/models`,
`GET /health`, and `GET /stats` (requests answered and a hash of each one's messages, so tests can
count what reached the server). One generation runs at a time; connections are threaded.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_MAX_BODY = 16 << 20


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
    """An lm-eval LM (the hf backend's) behind a lock, with the tokenizer that renders chats."""

    lm: Any
    name: str
    max_tokens_limit: int
    _lock: threading.Lock = field(default_factory=threading.Lock)

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

    def complete(self, messages: list[dict[str, str]], temperature: float, max_tokens: int) -> dict[str, Any]:
        import torch

        # The backend's model and tokenizer (peft adapter, dtype and device already applied), called
        # directly: one request at a time needs none of lm-eval's batching, and token counts are exact.
        tokenizer, model = self.lm.tokenizer, self.lm.model
        prompt = self.render(messages)
        # A rendered chat template already starts with BOS; a plain prompt gets the tokenizer's own.
        has_bos = bool(tokenizer.bos_token) and prompt.startswith(tokenizer.bos_token)
        encoded = tokenizer(prompt, add_special_tokens=not has_bos, return_tensors="pt").to(model.device)
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        with self._lock, torch.inference_mode():
            output = model.generate(**encoded, max_new_tokens=max_tokens, pad_token_id=tokenizer.pad_token_id
                                    if tokenizer.pad_token_id is not None else tokenizer.eos_token_id, **sampling)
        new = output[0, encoded["input_ids"].shape[1]:].tolist()
        stopped = bool(new) and new[-1] == tokenizer.eos_token_id
        return {"text": tokenizer.decode(new, skip_special_tokens=True),
                "prompt_tokens": int(encoded["input_ids"].shape[1]), "completion_tokens": len(new),
                "finish_reason": "stop" if stopped or len(new) < max_tokens else "length"}


def load_chat_model(target: str, served_name: str, max_tokens: int, *, dtype: str = "auto",
                    device: str | None = None, where: str = "atax serve") -> ChatModel:
    """`target` loaded through the hf backend (adapter, dtype and device applied), ready to serve."""
    from harness.evaluate.backends.hf import HFBackend
    from harness.evaluate.runner import validate_options
    from harness.evaluate.target import resolve_target

    options = validate_options(HFBackend, {"dtype": dtype, "device": device, "batch_size": 1}, where)
    return ChatModel(HFBackend().make_lm(resolve_target(target), options, {}), served_name, max_tokens)


def _fold_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system and rest and rest[0]["role"] == "user":
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
    return rest


class ChatServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], model: ChatModel, api_key: str | None = None,
                 quiet: bool = False) -> None:
        super().__init__(address, _Handler)
        self.model, self.api_key, self.quiet = model, api_key, quiet
        self.stats: dict[str, Any] = {"requests": 0, "completions": 0, "errors": 0, "prompt_hashes": []}
        self.stats_lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: ChatServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?")[0].rstrip("/")
        if path == "/health":
            return self._send(200, {"status": "ok"})
        if path == "/stats":
            with self.server.stats_lock:
                return self._send(200, json.loads(json.dumps(self.server.stats)))
        try:
            self._authorize()
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
            self._send(200, self._complete(body))
        except RequestError as exc:
            self._error(exc)
        except Exception as exc:  # a bug or a failed generation: the client sees a 500 and retries
            self._error(RequestError(500, f"generation failed: {type(exc).__name__}: {exc}", "server_error"))

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
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or model.max_tokens_limit
        if not isinstance(temperature, (int, float)) or temperature < 0:
            raise RequestError(400, "temperature must be a number >= 0")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise RequestError(400, "max_tokens must be a positive integer")
        out = model.complete(messages, float(temperature), min(max_tokens, model.max_tokens_limit))
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
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > _MAX_BODY:
            raise RequestError(400, "send a JSON body with Content-Length")
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            raise RequestError(400, "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise RequestError(400, "the body must be a JSON object")
        return body

    def _error(self, exc: RequestError) -> None:
        with self.server.stats_lock:
            self.server.stats["errors"] += 1
        self._send(exc.status, {"error": {"message": str(exc), "type": exc.kind, "param": None, "code": exc.code}})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        if not self.server.quiet:
            super().log_message(format, *args)


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
