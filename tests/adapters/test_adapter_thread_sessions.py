"""Each push worker thread sends through its own twin of the adapter's HTTP session."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import requests
from requests.adapters import BaseAdapter

from ehr_bridge.adapters._sessions import PerThreadSession
from ehr_bridge.adapters.iaptus import create
from ehr_bridge.security.transport import SecureSession


class _Transport(BaseAdapter):
    def send(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - never sent
        raise AssertionError

    def close(self) -> None:
        return


def _on_other_thread(sessions: PerThreadSession) -> list[requests.Session]:
    seen: list[requests.Session] = []

    def use() -> None:
        seen.extend([sessions.get(), sessions.get()])

    thread = threading.Thread(target=use)
    thread.start()
    thread.join()
    return seen


def test_another_thread_gets_its_own_twin_with_the_same_security() -> None:
    primary = SecureSession(
        verify="/etc/ca.pem", cert=("c.pem", "k.pem"), proxy_url="http://127.0.0.1:3128"
    )
    primary.auth = ("user", "not-a-real-secret")
    transport = _Transport()
    primary.mount("https://trust.example/", transport)
    sessions = PerThreadSession(primary)
    assert sessions.get() is primary  # the building thread keeps the original
    first, again = _on_other_thread(sessions)
    assert first is again and first is not primary  # one twin per thread, reused
    assert isinstance(first, SecureSession)
    assert (first.verify, first.cert, first.auth) == (primary.verify, primary.cert, primary.auth)
    assert first.limits is primary.limits
    assert (
        first.proxies == primary.proxies == {"http": primary.proxy_url, "https": primary.proxy_url}
    )
    assert first.trust_env is primary.trust_env is False  # no proxy or .netrc from the env
    assert first.get_adapter("https://trust.example/x") is transport
    assert first.get_adapter("https://other.example/") is not primary.get_adapter(
        "https://other.example/"
    )  # its own connection pool


def test_a_callers_own_session_is_shared_as_given() -> None:
    own = requests.Session()
    sessions = PerThreadSession(own)
    assert _on_other_thread(sessions) == [own, own]


def test_the_iaptus_adapter_declares_thread_safe_writes(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("T_TOKEN", "t")
    adapter = create(
        {"base_url": "https://trust.example/api", "token_env": "T_TOKEN"},
        base_dir=tmp_path,
        key="trust",
        provider_code="IESO01",
    )
    assert adapter.concurrent_writes is True
