"""Alerts once per incident: a connection failing for too long, or dead letters appearing.

Two kinds of incident per connection:

- ``failing``: some flow's latest run failed, continuously, for at least the threshold
  (``observability.failure_alert_minutes``). Shorter blips never alert.
- ``dead_letters``: the connection's outbox holds dead letters. More dead letters while
  the incident is open do not alert again; it resolves when an operator has retried or
  cancelled them all.

Each incident sends one ``firing`` alert when it opens and one ``resolved`` alert when it
closes, however many attempts failed in between. Flow threads only record what happened
(``on_event`` must be quick); ``evaluate`` decides and sends, from the alert thread or a
test. A notifier that fails keeps its alerts queued, in order, for the next evaluation.
State lives in this process: a restarted daemon announces an incident still open once more.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from ehr_bridge.sync.events import FlowFinished, WriteFinished

log = logging.getLogger(__name__)

IncidentKind = Literal["failing", "dead_letters", "risk"]
AlertState = Literal["firing", "resolved"]
_KINDS: tuple[IncidentKind, ...] = ("failing", "dead_letters")


@dataclass(frozen=True)
class Alert:
    """One message to operators; names the connection, flows and codes, never a record."""

    state: AlertState
    kind: IncidentKind
    connection: str
    since: datetime
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The webhook body; ``text`` is what chat webhooks (Slack, Teams) display."""
        return {
            "source": "ehr-bridge",
            "status": self.state,
            "kind": self.kind,
            "connection": self.connection,
            "since": self.since.isoformat(timespec="seconds"),
            "summary": self.summary,
            "details": dict(self.details),
            "text": f"[ehr-bridge] {self.state.upper()}: {self.summary}",
        }


class Notifier(Protocol):
    """Sends an alert somewhere; raises on failure so the alert is kept and retried."""

    def send(self, alert: Alert) -> None:
        """Deliver one alert."""
        ...


class RiskSource(Protocol):
    """Where risk events are followed: the Store's ``risks``, ``claim_risk_alert``..."""

    def risks(self, connection: str | None = None, *, open_only: bool = False) -> list[Any]:
        """Risk events with their write-back's state (``store.RiskView``)."""
        ...

    def claim_risk_alert(self, risk_id: str, previous: datetime | None, at: datetime) -> bool:
        """Take the right to send this risk's next alert (False: another daemon did)."""
        ...

    def undo_risk_alert(self, risk_id: str, previous: datetime | None, at: datetime) -> None:
        """Give the claim back: the alert could not be delivered."""
        ...


class DeadLetterCounts(Protocol):
    """Where dead letters are counted: the Store's ``outbox_counts``."""

    def outbox_counts(self, connection: str) -> dict[str, int]:
        """Outbox rows by state."""
        ...


@dataclass(frozen=True)
class RiskPolicy:
    """A connection's risk escalation: acknowledgement window and repeat interval."""

    acknowledge_minutes: float = 60.0
    repeat_minutes: float = 30.0


_WHY = {
    "quarantined": "a session bundle holding a risk was refused (quarantine)",
    "not_writable": "the trust adapter cannot take risk items",
    "dead_letter": "the risk item could not be written to the trust",
    "cancelled": "the risk item was cancelled before it reached the trust",
    "not_acknowledged": "nobody at the trust has acknowledged the risk item",
}


def overdue_reason(view: Any, now: datetime, policy: RiskPolicy) -> str | None:
    """Why an open risk needs a page now (a key of ``_WHY``), or None while it can wait."""
    if view.origin == "quarantine":
        return "quarantined"
    if view.outbox_key is None:
        return "not_writable"
    if view.outbox_state == "dead":
        return "dead_letter"
    if view.outbox_state == "cancelled":
        return "cancelled"
    if now - view.created_at >= timedelta(minutes=policy.acknowledge_minutes):
        return "not_acknowledged"
    return None


@dataclass
class _Incident:
    open: bool = False
    since: datetime | None = None


@dataclass
class _Failures:
    """Per flow: when (clock seconds) its current run of failures began, and its code."""

    since: dict[str, float] = field(default_factory=dict)
    codes: dict[str, str] = field(default_factory=dict)


class AlertManager:
    """Turns flow events and dead-letter counts into one alert per incident, and one recovery."""

    def __init__(
        self,
        connections: Sequence[str],
        notifiers: Sequence[Notifier],
        *,
        failure_seconds: float,
        dead_letters: DeadLetterCounts | None = None,
        risks: RiskSource | None = None,
        risk_policy: Mapping[str, RiskPolicy] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._connections = list(connections)
        self._notifiers = list(notifiers)
        self._threshold = failure_seconds
        self._dead_letters = dead_letters
        self._risks = risks
        self._risk_policy = dict(risk_policy or {})
        #: risks this process paged for and not yet announced as acknowledged or resolved
        self._paged: dict[str, tuple[str, datetime]] = {}
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._failures = {name: _Failures() for name in self._connections}
        self._incidents: dict[tuple[str, IncidentKind], _Incident] = {
            (name, kind): _Incident() for name in self._connections for kind in _KINDS
        }
        self._queue: list[Alert] = []
        self.wake = threading.Event()

    # --- called from flow threads ----------------------------------------------------
    def on_event(self, event: FlowFinished | WriteFinished) -> None:
        """Record a flow's outcome (quick, never sends); a dead write asks for a check."""
        if isinstance(event, WriteFinished):
            if event.outcome == "dead":
                self.wake.set()
            return
        failures = self._failures.get(event.connection)
        if failures is None:
            return
        with self._lock:
            if event.error is None:
                failures.since.pop(event.flow, None)
                failures.codes.pop(event.flow, None)
            else:
                failures.since.setdefault(event.flow, self._clock())
                failures.codes[event.flow] = event.error_code or "error"
        self.wake.set()

    # --- called from the alert thread (or a test) ------------------------------------
    def evaluate(self) -> list[Alert]:
        """Open and close incidents as the state now stands, then send what is queued.

        Returns the alerts delivered by this call (every notifier took them).
        """
        for name in self._connections:
            self._judge_failing(name)
            self._judge_dead_letters(name)
        sent = self._flush()
        return sent + self._judge_risks()

    def _judge_risks(self) -> list[Alert]:
        """Page for every open risk that is overdue, now and then every repeat interval.

        A risk alert is sent straight away, not queued behind others: its schedule is kept
        in the store (claimed before sending, given back if no notifier took it), so two
        daemons do not both page for one interval and a restart does not reset it.
        """
        if self._risks is None:
            return []
        try:
            views = self._risks.risks(open_only=True)
        except Exception as exc:  # the database may be down: judge again next time
            log.warning("alerts: cannot read risks", extra={"error": type(exc).__name__})
            return []
        now = self._wall()
        still_open = {view.id for view in views}
        sent: list[Alert] = []
        for risk_id in [r for r in self._paged if r not in still_open]:
            sent += self._announce_closed(risk_id)
        for view in views:
            if view.connection not in self._risk_policy:
                continue
            alert = self._risk_alert(view, now)
            if alert is not None and self._send_risk(view, alert, now):
                sent.append(alert)
        return sent

    def _risk_alert(self, view: Any, now: datetime) -> Alert | None:
        policy = self._risk_policy[view.connection]
        why = overdue_reason(view, now, policy)
        if why is None:
            return None
        last = view.last_alert_at
        if last is not None and now - last < timedelta(minutes=policy.repeat_minutes):
            return None
        referral = view.trust_referral_id or "unknown"
        summary = (
            f"RISK ({view.level}) on connection {view.connection}: {_WHY[why]};"
            f" trust referral {referral}, risk {view.id}: tell the duty team now,"
            " then `ehr-bridge risk list`"
        )
        details = {
            "risk": view.id,
            "trust_referral_id": view.trust_referral_id,
            "level": view.level,
            "reason": view.reason,
            "why": why,
            "alert": view.alerts_sent + 1,
        }
        return Alert("firing", "risk", view.connection, view.created_at, summary, details)

    def _send_risk(self, view: Any, alert: Alert, now: datetime) -> bool:
        log.error(
            "risk needs the duty team",
            extra={"connection": view.connection, "risk": view.id, "why": alert.details["why"]},
        )
        if not self._risks or not self._risks.claim_risk_alert(view.id, view.last_alert_at, now):
            return False
        if self._deliver(alert):
            self._paged[view.id] = (view.connection, view.created_at)
            return True
        self._risks.undo_risk_alert(view.id, view.last_alert_at, now)
        return False

    def _announce_closed(self, risk_id: str) -> list[Alert]:
        """One ``resolved`` alert for a risk this process paged for, once it is closed."""
        connection, since = self._paged[risk_id]
        summary = f"risk {risk_id} on connection {connection} was acknowledged or resolved"
        alert = Alert("resolved", "risk", connection, since, summary, {"risk": risk_id})
        if not self._deliver(alert):
            return []
        del self._paged[risk_id]
        return [alert]

    def _judge_failing(self, name: str) -> None:
        with self._lock:
            failures = self._failures[name]
            started = min(failures.since.values()) if failures.since else None
            codes = dict(sorted(failures.codes.items()))
        incident = self._incidents[(name, "failing")]
        if started is not None and not incident.open:
            failed_for = self._clock() - started
            if failed_for >= self._threshold:
                since = self._wall() - timedelta(seconds=failed_for)
                flows = ", ".join(f"{flow} ({code})" for flow, code in codes.items())
                summary = f"connection {name} has been failing for {failed_for / 60:.0f} min"
                self._open(incident, since, "failing", name, f"{summary}: {flows}", codes)
        elif started is None and incident.open:
            self._close(incident, "failing", name, f"connection {name} has recovered", {})

    def _judge_dead_letters(self, name: str) -> None:
        if self._dead_letters is None:
            return
        try:
            dead = self._dead_letters.outbox_counts(name).get("dead", 0)
        except Exception as exc:  # the database may be down: judge again next time
            log.warning("alerts: cannot count dead letters", extra={"error": type(exc).__name__})
            return
        incident = self._incidents[(name, "dead_letters")]
        details = {"dead_letters": dead}
        if dead and not incident.open:
            summary = f"connection {name} has {dead} dead letter(s): see `ehr-bridge outbox list`"
            self._open(incident, self._wall(), "dead_letters", name, summary, details)
        elif not dead and incident.open:
            summary = f"connection {name} has no dead letters left"
            self._close(incident, "dead_letters", name, summary, details)

    def _open(
        self,
        incident: _Incident,
        since: datetime,
        kind: IncidentKind,
        name: str,
        summary: str,
        details: Mapping[str, Any],
    ) -> None:
        incident.open, incident.since = True, since
        self._queue.append(Alert("firing", kind, name, since, summary, details))
        log.warning("incident opened", extra={"connection": name, "kind": kind})

    def _close(
        self,
        incident: _Incident,
        kind: IncidentKind,
        name: str,
        summary: str,
        details: Mapping[str, Any],
    ) -> None:
        since = incident.since or self._wall()
        incident.open, incident.since = False, None
        self._queue.append(Alert("resolved", kind, name, since, summary, details))
        log.info("incident resolved", extra={"connection": name, "kind": kind})

    def _flush(self) -> list[Alert]:
        sent: list[Alert] = []
        while self._queue:
            alert = self._queue[0]
            if not self._deliver(alert):
                break
            sent.append(self._queue.pop(0))
        return sent

    def _deliver(self, alert: Alert) -> bool:
        for notifier in self._notifiers:
            try:
                notifier.send(alert)
            except Exception as exc:  # kept in the queue and tried at the next evaluation
                log.warning(
                    "alert not delivered; will retry",
                    extra={"notifier": type(notifier).__name__, "error": type(exc).__name__},
                )
                return False
        return True

    def open_incidents(self) -> list[tuple[str, IncidentKind]]:
        """(connection, kind) of every open incident, for status displays and tests."""
        return [key for key, incident in self._incidents.items() if incident.open]


class AlertLoop:
    """Runs ``evaluate`` every ``interval`` seconds, or sooner when an event wakes it."""

    def __init__(self, manager: AlertManager, interval: float = 15.0) -> None:
        self._manager = manager
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Evaluate a last time (a recovery seen at shutdown is still sent), then stop."""
        self._stop.set()
        self._manager.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._manager.wake.wait(self._interval)
            self._manager.wake.clear()
            try:
                self._manager.evaluate()
            except Exception as exc:  # never let the alert thread die
                log.error("alert evaluation failed", extra={"error": type(exc).__name__})
