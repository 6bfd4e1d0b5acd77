"""One check whether the Hugging Face hub can be reached, before anything asks it for data.

Without it, every dataset or model lookup on a machine with no route to the hub spends its own
retries on DNS and connection timeouts (~23 s per dataset seen here) before failing. One name
lookup, once per process, decides: if the hub cannot be resolved the process goes offline
(HF_HUB_OFFLINE / HF_DATASETS_OFFLINE, which the libraries also read after import), says so
once, and cached or local copies are used or the caller's one-line error comes at once.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from urllib.parse import urlparse

_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
_checked: dict[str, str | None] = {}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def hub_host() -> str:
    return urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"


def _resolves(host: str, timeout_s: float) -> str | None:
    """None when `host` resolves within `timeout_s`, else why not (a lookup that hangs counts as failed)."""
    outcome: list[str | None] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"{host} does not resolve ({exc.strerror or exc})")

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return outcome[0] if outcome else f"resolving {host} took over {timeout_s:g} s"


def offline_reason(timeout_s: float = 3.0) -> str | None:
    """Why the hub cannot be used by this process, or None when it can (checked once per host)."""
    if any(_truthy(os.environ.get(name)) for name in _OFFLINE_VARIABLES):
        return "offline mode is set (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)"
    host = hub_host()
    if host not in _checked:
        _checked[host] = _resolves(host, timeout_s)
    return _checked[host]


def _to_stderr(message: str) -> None:
    import sys

    print(f"atax: {message}", file=sys.stderr, flush=True)


def go_offline_if_unreachable(log: Callable[[str], None] = _to_stderr, timeout_s: float = 3.0) -> str | None:
    """Check once; when the hub is unreachable switch this process to offline mode and say so once.

    Returns the reason when offline (set by the user or by this check), else None.
    """
    already = any(_truthy(os.environ.get(name)) for name in _OFFLINE_VARIABLES)
    reason = offline_reason(timeout_s)
    if reason is None or already:
        return reason
    for name in _OFFLINE_VARIABLES:
        os.environ[name] = "1"
    _set_library_flags()
    log(f"the Hugging Face hub is unreachable ({reason}): working offline, from local and cached copies only")
    return reason


def _set_library_flags() -> None:
    """huggingface_hub and datasets read the variables when imported: set their copies too, if loaded."""
    import sys

    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    config = sys.modules.get("datasets.config")
    if config is not None:
        config.HF_HUB_OFFLINE = True
        if hasattr(config, "HF_DATASETS_OFFLINE"):
            config.HF_DATASETS_OFFLINE = True
