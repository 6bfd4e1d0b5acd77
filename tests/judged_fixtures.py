"""Fixtures for the judged suites: project-written questions in FastChat's formats, a scripted judge
(a real stdlib HTTP server on loopback, the outer boundary of the system under test), and `atax serve`
started as a subprocess.

The question texts are ours; each carries a marker (`<<q7>>`) the scripted judge keys its reply on.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# Loopback traffic must never go through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

QUESTIONS: list[dict[str, Any]] = [
    {"question_id": 1, "category": "writing", "turns": ["<<q1>> Describe a quiet harbour town at dawn.",
                                                        "Rewrite it as a four-line poem."]},
    {"question_id": 2, "category": "math", "turns": ["<<q2>> What is 17 plus 25?", "Now double that."]},
    {"question_id": 3, "category": "coding", "turns": ["<<q3>> Write a Python function that sums a list.",
                                                       "Make it skip None values."]},
    {"question_id": 4, "category": "stem", "turns": ["<<q4>> Why does ice float on water?",
                                                     "Explain it to a ten-year-old."]},
    {"question_id": 5, "category": "reasoning", "turns": ["<<q5>> Ann is taller than Bo; Bo is taller than Cy. "
                                                          "Who is shortest?", "Who is tallest?"]},
    {"question_id": 6, "category": "roleplay", "turns": ["<<q6>> Pretend to be a ship's cook greeting the crew.",
                                                         "Now complain about the weather."]},
]
# Reference answers in FastChat's model-answer format (math, reasoning, coding need them).
REFERENCES: dict[int, list[str]] = {2: ["42", "84"], 3: ["def total(xs):\n    return sum(xs)",
                                                         "def total(xs):\n    return sum(x for x in xs if x is not None)"],
                                    5: ["Cy", "Ann"]}
VICUNA: list[dict[str, Any]] = [
    {"question_id": 1, "category": "generic", "turns": ["<<v1>> How can I keep a tidy desk?"]},
    {"question_id": 2, "category": "knowledge", "turns": ["<<v2>> What causes ocean tides?"]},
    {"question_id": 3, "category": "math", "turns": ["<<v3>> What is 9 squared?"]},
    {"question_id": 4, "category": "fermi", "turns": ["<<v4>> How many grains of rice fit in a cup?"]},
]
VICUNA_REFERENCES: dict[int, list[str]] = {3: ["81"]}


def write_bench(directory: Path, questions: list[dict[str, Any]], references: dict[int, list[str]]) -> Path:
    """FastChat's layout: `question.jsonl` and `reference_answer/gpt-4.jsonl`; returns the question file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "question.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")
    (directory / "reference_answer").mkdir(exist_ok=True)
    (directory / "reference_answer" / "gpt-4.jsonl").write_text("".join(
        json.dumps({"question_id": qid, "answer_id": f"ref{qid}", "model_id": "gpt-4",
                    "choices": [{"index": 0, "turns": turns}], "tstamp": 0.0}) + "\n"
        for qid, turns in references.items()), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "harness", "serve", "builtin:tiny-llama", "--port", str(port),
                             "--quiet", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"atax serve exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
            with contextlib.suppress(OSError):
                with _OPENER.open(f"{base}/health", timeout=2):
                    break
            if time.monotonic() > deadline:
                raise AssertionError("atax serve did not answer in time")
            time.sleep(0.2)
        yield f"{base}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server_stats(api_base: str) -> dict[str, Any]:
    with _OPENER.open(api_base.rsplit("/v1", 1)[0] + "/stats", timeout=5) as response:
        return json.loads(response.read())
