"""The one hub check: an unresolvable hub switches the process to offline mode once, with one note,
instead of every dataset lookup spending its own DNS retries."""

from __future__ import annotations

import os
import socket

import pytest

from harness import hub


@pytest.fixture
def online_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hub, "_checked", {})
    yield
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # the tests' process stays offline
        os.environ[name] = "1"


def test_an_unresolvable_hub_turns_the_process_offline_once(online_env, monkeypatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.atax-test.invalid")
    lookups = []
    real = socket.getaddrinfo

    def counting(host, *args, **kwargs):
        lookups.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    notes: list[str] = []
    reason = hub.go_offline_if_unreachable(notes.append)
    assert reason is not None and "hub.atax-test.invalid does not resolve" in reason
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"
    assert len(notes) == 1 and "working offline" in notes[0]
    assert hub.go_offline_if_unreachable(notes.append) is not None
    assert lookups == ["hub.atax-test.invalid"] and len(notes) == 1  # checked and said once


def test_a_resolvable_hub_changes_nothing(online_env, monkeypatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://localhost:1")  # resolves everywhere, no traffic sent
    notes: list[str] = []
    assert hub.go_offline_if_unreachable(notes.append) is None
    assert "HF_HUB_OFFLINE" not in os.environ and notes == []


def test_offline_mode_set_by_the_user_is_reported_without_a_lookup(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: pytest.fail("looked the hub up while offline"))
    assert "offline mode is set" in hub.offline_reason()
