"""`atax serve CHECKPOINT_OR_MODEL --port P`: an OpenAI-compatible chat-completions server on
loopback, from the `hf` backend (a local LLM judge for CPU runs; on a GPU use `vllm serve`).
"""

from __future__ import annotations

import sys

import typer

from harness.errors import UserError
from harness.evaluate.chat_server import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_QUEUE
from harness.evaluate.local_judge import is_loopback


def serve(
    target: str = typer.Argument(..., metavar="CHECKPOINT_OR_MODEL", help=(
        "atax checkpoint directory, Hugging Face model directory, hub id or builtin:tiny-llama.")),
    port: int = typer.Option(8000, "--port", help="TCP port (0: any free port, printed at start)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; loopback unless you mean otherwise."),
    served_model_name: str | None = typer.Option(None, "--served-model-name", help=(
        "Model name clients must send (default: CHECKPOINT_OR_MODEL as given, as vllm serve does).")),
    api_key: str | None = typer.Option(None, "--api-key", envvar="ATAX_SERVE_API_KEY", help=(
        "Require 'Authorization: Bearer KEY' (or set $ATAX_SERVE_API_KEY, which keeps it out of `ps`).")),
    max_tokens: int = typer.Option(512, "--max-tokens", min=1, help="Upper limit on max_tokens of a request."),
    max_prompt_tokens: int | None = typer.Option(None, "--max-prompt-tokens", min=1, help=(
        "Longest prompt served, in tokens; longer ones get HTTP 400 (default: the model's context).")),
    max_body_mb: float = typer.Option(DEFAULT_MAX_BODY_BYTES / 2**20, "--max-body-mb", min=0.001, max=1024, help=(
        "Largest request body; larger ones get HTTP 400.")),
    max_queue: int = typer.Option(DEFAULT_MAX_QUEUE, "--max-queue", min=1, max=100_000, help=(
        "Completions waiting or running at once; more get HTTP 503 with Retry-After.")),
    dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16."),
    device: str | None = typer.Option(None, "--device", help="torch device (default: cuda if available, else cpu)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-request log lines."),
) -> None:
    """Serve CHECKPOINT_OR_MODEL at http://HOST:PORT/v1 (chat completions) until interrupted."""
    from harness.evaluate.chat_server import ChatServer, load_chat_model

    if not is_loopback(host) and not api_key:
        sys.stderr.write(f"warning: serving on {host} without --api-key: anyone who reaches it can use the model\n")
    model = load_chat_model(target, served_model_name or target, max_tokens, dtype=dtype, device=device,
                            max_prompt_tokens=max_prompt_tokens)
    try:
        server = ChatServer((host, port), model, api_key, quiet, max_body_bytes=int(max_body_mb * 2**20),
                            max_queue=max_queue)
    except OSError as exc:
        raise UserError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                        "choose another port") from None
    bound = server.server_address[1]
    # stdout carries this one line so scripts can read the URL (and the port, with --port 0).
    sys.stdout.write(f"serving '{served_model_name or target}' at http://{host}:{bound}/v1\n")
    sys.stdout.flush()
    try:
        server.serve_forever()  # until SIGINT/SIGTERM (harness.cli.interrupt): one line, exit 130/143
    finally:
        server.server_close()

