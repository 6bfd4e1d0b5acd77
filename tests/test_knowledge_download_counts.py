"""Building lm-eval tasks from local files sends no download-count requests (datasets would send
one HEAD per task to its S3 bucket: 63 per knowledge eval); a user's HF_UPDATE_DOWNLOAD_COUNTS
is obeyed. The bucket is replaced by a local HTTP server that counts what reaches it."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.evaluate.runner import EvalRequest, run_eval


class _Bucket(ThreadingHTTPServer):
    daemon_threads = True
    heads = 0


class _Handler(BaseHTTPRequestHandler):
    server: _Bucket

    def do_HEAD(self) -> None:  # noqa: N802
        self.server.heads += 1
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def bucket(monkeypatch):
    import datasets.config

    server = _Bucket(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # As on a machine online: the tests run with HF_HUB_OFFLINE=1, which stops the counting too.
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", True)
    monkeypatch.setattr(datasets.config, "S3_DATASETS_BUCKET_PREFIX", f"http://127.0.0.1:{server.server_address[1]}")
    yield server
    server.shutdown()
    server.server_close()


def evaluate(tmp_path, name: str) -> None:
    options = {"data_dir": "builtin:toy-knowledge", "benchmarks": ["arc_challenge", "mmlu"], "limit": 1}
    run_eval(EvalRequest("builtin:tiny-llama", "knowledge", options, "hf", {}, tmp_path / name))


def test_local_data_sends_no_download_counts_unless_the_user_asks(tmp_path, bucket, monkeypatch):
    import datasets.config

    evaluate(tmp_path, "default")
    assert bucket.heads == 0
    assert datasets.config.HF_UPDATE_DOWNLOAD_COUNTS is True  # restored after loading
    monkeypatch.setenv("HF_UPDATE_DOWNLOAD_COUNTS", "1")
    evaluate(tmp_path, "asked")
    assert bucket.heads > 1  # one per task built: arc_challenge and MMLU's subjects
