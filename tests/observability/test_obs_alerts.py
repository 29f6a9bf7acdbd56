"""Alerts: one per incident and one on recovery, never one per failed attempt.

A fake clock drives time; a real WebhookNotifier posts to a fake receiver on loopback.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ehr_bridge.config import ObservabilityConfig, Secret
from ehr_bridge.errors import ConfigError
from ehr_bridge.observability import (
    Alert,
    AlertManager,
    EmailNotifier,
    WebhookNotifier,
    build_notifiers,
)
from ehr_bridge.sync.events import FlowFinished, WriteFinished

THRESHOLD = 15 * 60.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records JSON bodies (or fails on demand)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                if receiver.status < 300:
                    receiver.bodies.append(body)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    fake = Receiver()
    yield fake
    fake.close()


class DeadLetters:
    def __init__(self) -> None:
        self.dead = 0

    def outbox_counts(self, connection: str) -> dict[str, int]:
        return {"done": 10, "dead": self.dead} if self.dead else {"done": 10}


def _manager(receiver: Receiver, clock: FakeClock, dead: DeadLetters | None = None) -> AlertManager:
    return AlertManager(
        ["trust-a", "trust-b"],
        [WebhookNotifier(Secret(receiver.url))],
        failure_seconds=THRESHOLD,
        dead_letters=dead,
        clock=clock,
        wall=lambda: datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
    )


def _fail(manager: AlertManager, flow: str = "pull", connection: str = "trust-a") -> None:
    manager.on_event(
        FlowFinished(connection, flow, 0.1, {}, "GET /referrals: HTTP 503", "transient")
    )


def _ok(manager: AlertManager, flow: str = "pull", connection: str = "trust-a") -> None:
    manager.on_event(FlowFinished(connection, flow, 0.1, {"seen": 1}))


def test_one_alert_per_incident_and_one_on_recovery(receiver: Receiver) -> None:
    clock = FakeClock()
    manager = _manager(receiver, clock)
    for _ in range(14):  # failing every minute, under the threshold: nothing yet
        _fail(manager)
        assert manager.evaluate() == []
        clock.advance(60)
    for _ in range(30):  # past the threshold, still failing at every attempt
        _fail(manager)
        manager.evaluate()
        clock.advance(60)
    _ok(manager)
    manager.evaluate()
    for _ in range(5):  # healthy afterwards: nothing more
        _ok(manager)
        manager.evaluate()
        clock.advance(60)
    assert [(b["status"], b["kind"], b["connection"]) for b in receiver.bodies] == [
        ("firing", "failing", "trust-a"),
        ("resolved", "failing", "trust-a"),
    ]
    firing = receiver.bodies[0]
    assert firing["details"] == {"pull": "transient"}
    assert "failing for 15 min" in firing["summary"]
    assert firing["text"].startswith("[ehr-bridge] FIRING:")


def test_short_blips_and_interleaved_successes_never_alert(receiver: Receiver) -> None:
    clock = FakeClock()
    manager = _manager(receiver, clock)
    for _ in range(40):  # fails, then recovers, again and again: each streak is short
        _fail(manager)
        clock.advance(10 * 60)
        manager.evaluate()
        _ok(manager)
        clock.advance(10 * 60)
        manager.evaluate()
    assert receiver.bodies == []


def test_streak_spans_flows_and_connections_are_independent(receiver: Receiver) -> None:
    clock = FakeClock()
    manager = _manager(receiver, clock)
    _fail(manager, "pull")
    clock.advance(10 * 60)
    _fail(manager, "push")
    _ok(manager, "pull")  # pull recovers, push still failing: the connection is failing
    _ok(manager, "pull", connection="trust-b")
    clock.advance(6 * 60)
    manager.evaluate()
    assert receiver.bodies == []  # push has failed for 6 minutes only
    clock.advance(10 * 60)
    manager.evaluate()
    assert [(b["status"], b["connection"], b["details"]) for b in receiver.bodies] == [
        ("firing", "trust-a", {"push": "transient"})
    ]
    assert manager.open_incidents() == [("trust-a", "failing")]


def test_dead_letters_alert_once_while_they_grow_and_once_when_cleared(
    receiver: Receiver,
) -> None:
    clock, dead = FakeClock(), DeadLetters()
    manager = _manager(receiver, clock, dead)
    manager.evaluate()
    dead.dead = 2
    manager.on_event(WriteFinished("trust-a", "clinical_note", "dead", 0.2))
    assert manager.wake.is_set()
    manager.evaluate()
    dead.dead = 7  # more dead letters during the same incident
    manager.evaluate()
    manager.evaluate()
    dead.dead = 0  # an operator retried them and they were written
    manager.evaluate()
    statuses = [(b["status"], b["kind"], b["connection"]) for b in receiver.bodies]
    # both connections share the fake outbox, so each has its own incident
    assert statuses.count(("firing", "dead_letters", "trust-a")) == 1
    assert statuses.count(("resolved", "dead_letters", "trust-a")) == 1
    assert len(receiver.bodies) == 4
    assert receiver.bodies[0]["details"] == {"dead_letters": 2}


def test_undelivered_alert_is_kept_and_sent_once_when_the_receiver_is_back(
    receiver: Receiver,
) -> None:
    clock = FakeClock()
    manager = _manager(receiver, clock)
    receiver.status = 502
    _fail(manager)
    clock.advance(THRESHOLD + 1)
    for _ in range(5):
        _fail(manager)
        assert manager.evaluate() == []
        clock.advance(60)
    receiver.status = 200
    sent = manager.evaluate()
    assert [a.state for a in sent] == ["firing"]
    manager.evaluate()
    assert len(receiver.bodies) == 1


def test_alerts_name_no_record_and_no_error_text(receiver: Receiver) -> None:
    clock = FakeClock()
    manager = _manager(receiver, clock)
    manager.on_event(
        FlowFinished("trust-a", "pull", 0.1, {}, "record SR0000061, field x: bad", "fhir")
    )
    clock.advance(THRESHOLD)
    manager.evaluate()
    text = json.dumps(receiver.bodies)
    assert "SR0000061" not in text
    assert "fhir" in text


class FakeSmtp:
    sent: list[EmailMessage] = []

    def __init__(self, host: str, port: int, watch: object) -> None:
        self.calls = [("connect", host, port)]

    def __enter__(self) -> FakeSmtp:
        return self

    def __exit__(self, *args: object) -> None:
        pass

    def starttls(self) -> None:
        self.calls.append(("starttls", "", 0))

    def login(self, user: str, password: str) -> None:
        assert (user, password) == ("alerts", "pw")

    def send_message(self, message: EmailMessage) -> None:
        FakeSmtp.sent.append(message)


def test_email_notifier_sends_a_plain_summary() -> None:
    config = ObservabilityConfig(
        smtp_host="127.0.0.1", smtp_from="bridge@example.invalid", smtp_to=["ops@example.invalid"]
    )
    notifier = EmailNotifier(config, Secret("pw"), "alerts", smtp=FakeSmtp)
    since = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    notifier.send(Alert("firing", "failing", "trust-a", since, "trust-a failing", {"pull": "x"}))
    message = FakeSmtp.sent[-1]
    assert message["Subject"] == "[ehr-bridge] FIRING: trust-a failing"
    assert message["To"] == "ops@example.invalid"
    assert "pull: x" in message.get_content()


def test_notifier_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config = ObservabilityConfig(alert_webhook_env="EHR_TEST_HOOK")
    monkeypatch.delenv("EHR_TEST_HOOK", raising=False)
    with pytest.raises(ConfigError) as caught:
        build_notifiers(config)
    assert caught.value.key == "observability.alert_webhook_env"
    monkeypatch.setenv("EHR_TEST_HOOK", "https://hooks.example.invalid/T000/secret-token")
    (notifier,) = build_notifiers(config)
    assert "secret-token" not in repr(notifier)
