"""`atax serve`'s server under careless and hostile clients, over real HTTP on 127.0.0.1 with the tiny
model: size limits and malformed requests are 400s (never 500s), a full queue is a 503, /stats needs
the key, and a client that disconnects leaves no traceback and frees its slot."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness.evaluate.chat_server import ChatServer, load_chat_model

KEY = "serve-test-key"
MODEL = "tiny"
MAX_BODY = 64 << 10
MAX_PROMPT = 64


@pytest.fixture(scope="module")
def server() -> Iterator[ChatServer]:
    model = load_chat_model("builtin:tiny-llama", MODEL, 8, max_prompt_tokens=MAX_PROMPT)
    chat = ChatServer(("127.0.0.1", 0), model, KEY, quiet=True, max_body_bytes=MAX_BODY, max_queue=1)
    thread = threading.Thread(target=chat.serve_forever, daemon=True)
    thread.start()
    yield chat
    chat.shutdown()
    chat.server_close()


def raw_request(server: ChatServer, head: str, body: bytes = b"") -> tuple[int, dict[str, str], dict[str, Any]]:
    """Send bytes as they are (no client library fixing them up); the status, headers and JSON body."""
    with socket.create_connection(server.server_address, timeout=60) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
            header_end = reply.find(b"\r\n\r\n")
            if header_end >= 0:
                headers = _headers(reply[:header_end])
                if len(reply) - header_end - 4 >= int(headers.get("content-length", "0")):
                    break
    status_line, _, _ = reply.partition(b"\r\n")
    headers = _headers(reply[:reply.find(b"\r\n\r\n")])
    payload = reply[reply.find(b"\r\n\r\n") + 4:]
    return int(status_line.split()[1]), headers, json.loads(payload) if payload else {}


def _headers(block: bytes) -> dict[str, str]:
    lines = block.decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


def post(server: ChatServer, body: Any, *, key: str | None = KEY, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else json.dumps(body).encode()
    auth = f"Authorization: Bearer {key}\n" if key else ""
    head = (f"POST /v1/chat/completions HTTP/1.1\nHost: x\n{auth}Content-Type: application/json\n"
            f"Content-Length: {len(data)}\nConnection: close\n")
    status, _, payload = raw_request(server, head, data)
    return status, payload


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, **fields}


def test_a_valid_request_is_answered(server: ChatServer) -> None:
    status, payload = post(server, chat(temperature=0))
    assert status == 200, payload
    assert 1 <= payload["usage"]["completion_tokens"] <= 2


@pytest.mark.parametrize("fields,message", [
    ({"max_tokens": 0}, "max_tokens must be an integer >= 1"),
    ({"max_tokens": -5}, "max_tokens must be an integer >= 1"),
    ({"max_tokens": True}, "max_tokens must be an integer >= 1"),
    ({"max_tokens": 2.5}, "max_tokens must be an integer >= 1"),
    ({"temperature": "hot"}, "temperature must be a number from 0 to 2"),
    ({"temperature": -1}, "temperature must be a number from 0 to 2"),
    ({"temperature": 1e308 * 10}, "temperature must be a number from 0 to 2"),  # Infinity on the wire
    ({"messages": []}, "messages must be a non-empty list"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "each message needs a role"),
    ({"messages": [{"role": "user", "content": 5}]}, "message content must be a string"),
    ({"stream": True}, "streaming is not supported"),
])
def test_bad_fields_are_400(server: ChatServer, fields: dict, message: str) -> None:
    status, payload = post(server, chat(**fields))
    assert status == 400, payload
    assert payload["error"]["message"].startswith(message)


def test_nan_temperature_is_400(server: ChatServer) -> None:
    status, payload = post(server, None, raw=json.dumps(chat()).replace('"max_tokens"', '"temperature": NaN, '
                                                                                            '"max_tokens"').encode())
    assert status == 400 and payload["error"]["message"].startswith("temperature must be a number"), payload


@pytest.mark.parametrize("length", ["abc", "-1", "", "1e3"])
def test_a_bad_content_length_is_400(server: ChatServer, length: str) -> None:
    head = f"POST /v1/chat/completions HTTP/1.1\nHost: x\nContent-Length: {length}\n"
    status, headers, payload = raw_request(server, head, b"{}")
    assert status == 400, payload
    assert payload["error"]["message"] == "send a JSON body with a numeric Content-Length"
    assert headers.get("connection") == "close"  # the unread body cannot be taken for a next request


def test_deeply_nested_or_broken_json_is_400(server: ChatServer) -> None:
    for raw in (b"[" * 100_000 + b"]" * 100_000, b"{not json", b"[1, 2]"):
        status, payload = post(server, None, raw=raw[:MAX_BODY])
        assert status == 400, payload
        assert payload["error"]["message"].startswith(("the body is not valid JSON", "the body must be a JSON object"))


def test_a_body_over_the_limit_is_400_without_reading_it(server: ChatServer) -> None:
    # Content-Length announces 1 GB; nothing of it is sent: the answer must not wait for it.
    head = f"POST /v1/chat/completions HTTP/1.1\nHost: x\nContent-Length: {1 << 30}\n"
    status, headers, payload = raw_request(server, head)
    assert status == 400 and payload["error"]["code"] == "body_too_large", payload
    assert payload["error"]["message"] == f"the body is {1 << 30} bytes; this server takes at most {MAX_BODY}"


def test_a_prompt_over_the_limit_is_400(server: ChatServer) -> None:
    long_words = " ".join(["word"] * (MAX_PROMPT * 2))  # tokenized, then refused
    status, payload = post(server, chat(messages=[{"role": "user", "content": long_words}]))
    assert status == 400 and payload["error"]["code"] == "context_length_exceeded", payload
    assert payload["error"]["message"].startswith("the prompt is ")
    huge = "x" * (MAX_BODY - 200)  # refused from its length in characters, before tokenizing
    status, payload = post(server, chat(messages=[{"role": "user", "content": huge}]))
    assert status == 400 and payload["error"]["code"] == "context_length_exceeded", payload


def test_the_default_prompt_limit_is_the_models_context() -> None:
    model = load_chat_model("builtin:tiny-llama", MODEL, 8)
    assert model.context is not None and model.prompt_limit == model.context - 1


def test_stats_need_the_key_when_one_is_set(server: ChatServer) -> None:
    head = "GET /stats HTTP/1.1\nHost: x\nConnection: close\n"
    status, _, payload = raw_request(server, head)
    assert status == 401, payload
    status, _, payload = raw_request(server, head + f"Authorization: Bearer {KEY}\n")
    assert status == 200 and payload["completions"] >= 1
    status, _, payload = raw_request(server, "GET /health HTTP/1.1\nHost: x\nConnection: close\n")
    assert status == 200 and payload == {"status": "ok"}


def test_a_full_queue_is_503_with_retry_after(server: ChatServer) -> None:
    assert server.slots.acquire(blocking=False)  # the one slot (max_queue=1) taken, as by a long generation
    try:
        data = json.dumps(chat()).encode()
        head = (f"POST /v1/chat/completions HTTP/1.1\nHost: x\nAuthorization: Bearer {KEY}\n"
                f"Content-Length: {len(data)}\nConnection: close\n")
        status, headers, payload = raw_request(server, head, data)
        assert status == 503 and payload["error"]["code"] == "queue_full", payload
        assert headers.get("retry-after") == "1"
    finally:
        server.slots.release()
    assert post(server, chat())[0] == 200  # the slot is free again


def test_a_client_that_disconnects_costs_no_traceback_and_frees_its_slot(server: ChatServer,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    before = stats(server)["disconnected"]
    data = json.dumps(chat(max_tokens=10_000)).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    with socket.create_connection(server.server_address) as sock:
        sock.sendall(head + data)
    # Gone before any answer: the server notices, counts it, and the next request gets the only slot.
    backstop = time.monotonic() + 120  # generous: only a hang meets it
    while stats(server)["disconnected"] == before:
        assert time.monotonic() < backstop, "the server did not notice the client left"
        time.sleep(0.05)
    assert post(server, chat())[0] == 200
    err = capsys.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err and "ConnectionReset" not in err


def stats(server: ChatServer) -> dict[str, Any]:
    with server.stats_lock:
        return dict(server.stats)


def test_serve_cli_takes_the_limits() -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for flag in ("--max-prompt-tokens", "--max-body-mb", "--max-queue"):
        assert flag in result.output

