"""Fixtures for the judged suites: project-written questions in FastChat's formats, a scripted judge
(a real stdlib HTTP server on loopback, the outer boundary of the system under test), and `atax serve`
started as a subprocess.

The question texts are ours; each carries a marker (`<<q7>>`) the scripted judge keys its reply on.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from serve_process import served

from suites.judged.toy_questions import QUESTIONS, REFERENCES, VICUNA, VICUNA_REFERENCES, write_bench  # noqa: F401

# Loopback traffic must never go through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

from serve_process import free_port  # noqa: E402,F401


class ScriptedJudge:
    """A judge on 127.0.0.1 whose replies a test decides: `reply(messages) -> (status, text)`.

    Counts every request and keeps the messages of each one answered with 200.
    """

    def __init__(self, reply: Callable[[list[dict[str, str]]], tuple[int, str]], delay_s: float = 0.0,
                 model: str = "scripted-judge") -> None:
        self.reply, self.delay_s, self.model = reply, delay_s, model
        self.requests = 0
        self.answered: list[list[dict[str, str]]] = []
        self.lock = threading.Lock()
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with judge.lock:
                    judge.requests += 1
                time.sleep(judge.delay_s)
                if body.get("model") != judge.model:
                    status, payload = 404, {"error": {"message": f"The model `{body.get('model')}` does not exist."}}
                else:
                    status, text = judge.reply(body["messages"])
                    payload = ({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
                               if status == 200 else {"error": {"message": text}})
                    if status == 200:
                        with judge.lock:
                            judge.answered.append(body["messages"])
                data = json.dumps(payload).encode()
                with contextlib.suppress(OSError):  # the client may have timed out and gone
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "0")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedJudge:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def marker_of(messages: list[dict[str, str]]) -> str | None:
    text = messages[-1]["content"]
    start = text.find("<<")
    return text[start + 2:text.index(">>", start)] if start >= 0 else None


@contextlib.contextmanager
def atax_serve(*args: str, env: dict[str, str] | None = None, timeout_s: float = 120) -> Iterator[str]:
    """Run `atax serve builtin:tiny-llama --port P ARGS` and yield its API base once /health answers."""
    with served("builtin:tiny-llama", *args, env=env, timeout_s=timeout_s) as url:
        yield url


def server_stats(api_base: str, key: str | None = None) -> dict[str, Any]:
    """The server's /stats (behind its API key when it has one)."""
    request = urllib.request.Request(api_base.rsplit("/v1", 1)[0] + "/stats",
                                     headers={"Authorization": f"Bearer {key}"} if key else {})
    with _OPENER.open(request, timeout=5) as response:
        return json.loads(response.read())
