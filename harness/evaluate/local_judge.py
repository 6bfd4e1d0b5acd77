"""Serve a chat model on a loopback port for as long as a block runs.

`served_here`: the server of `atax serve` on a thread of this process; the judged suites use it
when an experiment says `judge_serve: MODEL` (CPU tests, the quick start, users without an API).
The judge client still talks to it over real HTTP.
"""

from __future__ import annotations

import contextlib
import ipaddress
import threading
from collections.abc import Iterator
from typing import Any

from harness.errors import UserError


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (where atax may talk without a key or proxy)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def served_here(model: str, served_model_name: str, max_tokens: int) -> Iterator[str]:
    """Yield the API base (http://127.0.0.1:PORT/v1) of MODEL served from a thread of this process.

    In process rather than `atax serve` in a subprocess: a second interpreter spends ~5 s
    importing torch and transformers before it answers, once per judged eval job.
    """
    from harness.evaluate.chat_server import ChatServer, load_chat_model
    from harness.evaluate.reference_judge import NAME as REFERENCE_JUDGE
    from harness.evaluate.reference_judge import ReferenceJudge

    chat_model: Any
    if model == REFERENCE_JUDGE:  # a reference-match grader, not a language model
        chat_model = ReferenceJudge(served_model_name, max_tokens)
    else:
        try:
            chat_model = load_chat_model(model, served_model_name, max_tokens, where="judge_serve")
        except UserError as exc:  # its message names the CLI argument; here the option is what to fix
            raise UserError(f"judge_serve: {str(exc).removeprefix('CHECKPOINT_OR_MODEL: ')}") from None
    server = ChatServer(("127.0.0.1", 0), chat_model, quiet=True)
    # A short poll: shutdown() waits up to one poll interval (the default 0.5 s, per judged eval job).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              name="atax-judge-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
