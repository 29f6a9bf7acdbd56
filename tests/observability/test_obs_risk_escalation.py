"""A risk nobody at the trust has acknowledged pages at once, then on schedule, until it is.

Real Store (SQLite, and PostgreSQL when ``EHR_BRIDGE_TEST_DATABASE_URL`` is set), the real
AlertManager, a notifier that records what it is given (or refuses), and a wall clock the
test moves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ehr_bridge.errors import TerminalError
from ehr_bridge.observability.alerts import Alert, AlertManager, RiskPolicy
from ehr_bridge.store import RISK_PRIORITY, NewOutboxItem, NewRiskEvent, Store, utcnow
from ehr_bridge.store.submissions import CollectedBundle
from support.databases import BACKENDS, database_url


class Pager:
    """A notifier: keeps every alert, or refuses while ``down``."""

    def __init__(self) -> None:
        self.sent: list[Alert] = []
        self.down = False

    def send(self, alert: Alert) -> None:
        if self.down:
            raise ConnectionError("pager unreachable")
        self.sent.append(alert)


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return Store(database_url(request.param, tmp_path))


def _risk(store: Store, risk_id: str, *, writable: bool = True, origin: str = "session") -> None:
    outbox = (
        [
            NewOutboxItem(
                risk_id, "sr-1", "risk_alert", "Flag", f"flag-{risk_id}", priority=RISK_PRIORITY
            )
        ]
        if writable and origin == "session"
        else []
    )
    event = NewRiskEvent(
        id=risk_id,
        referral_id="sr-1",
        outbox_key=risk_id if outbox else None,
        origin=origin,
        level="urgent",
        reason="phq9_item9",
        raised_at=datetime(2026, 11, 3, 18, 0, tzinfo=UTC),
    )
    store.save_submissions(
        "trust-a",
        [CollectedBundle(f"h-{risk_id}", f"hash-{risk_id}", None, (), outbox, risks=[event])],
    )


def _manager(store: Store, pager: Pager, clock: Clock, **policy: float) -> AlertManager:
    return AlertManager(
        ["trust-a"],
        [pager],
        failure_seconds=600,
        risks=store,
        risk_policy={"trust-a": RiskPolicy(**policy)},
        wall=clock,
    )


def _risk_alerts(alerts: list[Alert], state: str = "firing") -> list[Alert]:
    return [a for a in alerts if a.kind == "risk" and a.state == state]


def test_an_unacknowledged_risk_pages_once_then_on_schedule_until_acknowledged(store):
    _risk(store, "risk-1")
    pager, clock = Pager(), Clock()
    manager = _manager(store, pager, clock, acknowledge_minutes=60, repeat_minutes=30)

    assert manager.evaluate() == []  # inside its window: no page yet
    clock.now += timedelta(minutes=61)
    [first] = _risk_alerts(manager.evaluate())
    assert first.details["why"] == "not_acknowledged" and first.details["risk"] == "risk-1"
    assert _risk_alerts(manager.evaluate()) == []  # not again straight away
    clock.now += timedelta(minutes=31)
    [second] = _risk_alerts(manager.evaluate())
    assert second.details["alert"] == 2

    store.record_acknowledgement("risk-1", clock.now, "duty.clinician1")
    [closed] = _risk_alerts(manager.evaluate(), "resolved")
    assert closed.details == {"risk": "risk-1"}
    clock.now += timedelta(hours=5)
    assert manager.evaluate() == []
    [view] = store.risks("trust-a")
    assert (view.alerts_sent, view.acknowledged_by) == (2, "duty.clinician1")


@pytest.mark.parametrize(
    ("setup", "why"),
    [
        ({"writable": False}, "not_writable"),
        ({"origin": "quarantine"}, "quarantined"),
    ],
)
def test_a_risk_that_cannot_reach_the_trust_pages_at_once(store, setup, why):
    _risk(store, "risk-1", **setup)
    pager, clock = Pager(), Clock()
    [alert] = _risk_alerts(_manager(store, pager, clock).evaluate())
    assert alert.details["why"] == why


def test_a_dead_lettered_risk_is_a_page_not_a_row_in_a_list(store):
    _risk(store, "risk-1")
    [row] = store.claim_due("trust-a", owner="w", lease_seconds=60, risk_only=True)
    store.finish_attempt(row.id, state="dead", owner="w", error="refused", error_code="http_422")
    pager, clock = Pager(), Clock()
    [alert] = _risk_alerts(_manager(store, pager, clock).evaluate())
    assert alert.details["why"] == "dead_letter"
    assert "risk-1" in alert.summary and "sr-1" not in alert.summary  # the trust's id only


def test_a_page_no_notifier_took_is_sent_at_the_next_look(store):
    _risk(store, "risk-1", writable=False)
    pager, clock = Pager(), Clock()
    manager = _manager(store, pager, clock)
    pager.down = True
    assert _risk_alerts(manager.evaluate()) == []
    pager.down = False
    assert len(_risk_alerts(manager.evaluate())) == 1


def test_two_daemons_judging_one_risk_page_once(store):
    _risk(store, "risk-1", writable=False)
    clock = Clock()
    first, second = Pager(), Pager()
    _manager(store, first, clock).evaluate()
    _manager(store, second, clock).evaluate()
    assert len(first.sent) + len(second.sent) == 1


def test_an_operator_resolves_a_risk_with_a_reason_and_it_is_audited(store):
    _risk(store, "risk-1", writable=False)
    with pytest.raises(TerminalError):
        store.resolve_risk("risk-1", actor="ops", reason=" ")
    view = store.resolve_risk("risk-1", actor="ops", reason="duty team confirmed by phone")
    assert view.resolved_by == "ops" and not view.open
    [entry] = store.audit_events(action="risk.resolve")
    assert entry.reason == "duty team confirmed by phone"
    pager, clock = Pager(), Clock()
    assert _risk_alerts(_manager(store, pager, clock).evaluate()) == []


def test_risks_are_claimed_before_every_routine_row(store):
    routine = [
        NewOutboxItem(f"routine-{n}", "sr-1", "care_contact", "Encounter", f"e{n}")
        for n in range(30)
    ]
    store.save_submissions("trust-a", [CollectedBundle("h-0", "hash-0", None, (), routine)])
    _risk(store, "risk-1")
    claimed = store.claim_due("trust-a", owner="w", lease_seconds=60, limit=5)
    assert claimed[0].id == "risk-1"
    lane = store.claim_due("trust-a", owner="w2", lease_seconds=60, risk_only=True)
    assert lane == []  # the lane never takes a routine row
