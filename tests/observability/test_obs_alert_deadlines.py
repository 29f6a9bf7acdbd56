"""Alert delivery has a whole deadline: a dripping webhook or SMTP server cannot hold it.

The receivers are real sockets on 127.0.0.1 that send a well-formed answer (an HTTP 200,
an SMTP greeting) one byte every 0.2 s, so every socket timeout is reset by the next byte
and only the session's own deadline can end the call. The alert thread then gets back to
its work with the alert still queued for the next evaluation.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ehr_bridge.config import ObservabilityConfig, Secret
from ehr_bridge.errors import TransientError
from ehr_bridge.observability import notifiers
from ehr_bridge.observability.alerts import Alert, AlertManager
from ehr_bridge.observability.notifiers import EmailNotifier, WebhookNotifier
from ehr_bridge.sync.events import FlowFinished
from support.hostile_peer import HostilePeer, http_answer

DRIP = 0.2
DEADLINE = 1.0
ALERT = Alert("firing", "failing", "trust-a", datetime(2026, 11, 2, 9, tzinfo=UTC), "x", {})


class DrippingSmtp:
    """Accepts and drips a greeting that never ends (``220-`` continuation lines)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._clients: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._clients.append(client)
            threading.Thread(target=self._drip, args=(client,), daemon=True).start()

    def _drip(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                for byte in b"220-still greeting\r\n":
                    if self._stop.wait(DRIP):
                        return
                    client.sendall(bytes([byte]))

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for client in self._clients:
            with contextlib.suppress(OSError):
                client.close()


@pytest.fixture
def short_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notifiers, "WEBHOOK_TIMEOUT_SECONDS", DEADLINE)
    monkeypatch.setattr(notifiers, "SMTP_TIMEOUT_SECONDS", DEADLINE)


@pytest.fixture
def webhook() -> Iterator[HostilePeer]:
    with HostilePeer("drip", http_answer({"ok": True}), byte_seconds=DRIP) as peer:
        yield peer


@pytest.fixture
def smtp() -> Iterator[DrippingSmtp]:
    server = DrippingSmtp()
    yield server
    server.close()


def _timed_failure(send: object) -> tuple[TransientError, float]:
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        send(ALERT)  # type: ignore[operator]
    return caught.value, time.monotonic() - started


@pytest.mark.usefixtures("short_deadlines")
def test_a_dripping_webhook_is_cut_off_at_the_deadline(webhook: HostilePeer) -> None:
    error, seconds = _timed_failure(WebhookNotifier(Secret(f"{webhook.base_url}/hook")).send)
    assert webhook.requests == 1 and DEADLINE * 0.9 < seconds < DEADLINE + 1.0
    assert error.safe_message == "alert webhook: CallDeadlineError"


@pytest.mark.usefixtures("short_deadlines")
def test_a_dripping_smtp_server_is_cut_off_at_the_deadline(smtp: DrippingSmtp) -> None:
    config = ObservabilityConfig(
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_from="bridge@example.invalid",
        smtp_to=["ops@example.invalid"],
    )
    error, seconds = _timed_failure(EmailNotifier(config, None, None).send)
    assert DEADLINE * 0.9 < seconds < DEADLINE + 1.0
    assert "within" in error.safe_message and "alert e-mail" in error.safe_message


@pytest.mark.usefixtures("short_deadlines")
def test_the_alert_thread_gets_back_with_the_alert_still_queued(webhook: HostilePeer) -> None:
    clock = [1000.0]
    manager = AlertManager(
        ["trust-a"],
        [WebhookNotifier(Secret(f"{webhook.base_url}/hook"))],
        failure_seconds=60,
        clock=lambda: clock[0],
        wall=lambda: datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
    )
    manager.on_event(FlowFinished("trust-a", "pull", 0.1, {}, "GET /referrals: 503", "transient"))
    clock[0] += 61
    started = time.monotonic()
    assert manager.evaluate() == []  # nothing delivered, and back within the deadline
    assert time.monotonic() - started < DEADLINE + 1.0
    assert manager.open_incidents() == [("trust-a", "failing")]
    assert manager.evaluate() == [] and webhook.requests == 2  # kept, and tried again
