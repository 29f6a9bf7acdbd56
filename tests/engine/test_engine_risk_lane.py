"""A risk reaches the trust's duty team ahead of a routine backlog, exactly once.

The real flows against the IAPTUS-style trust simulator over HTTP on loopback, a real
provider folder and a real Store (SQLite, and PostgreSQL when
``EHR_BRIDGE_TEST_DATABASE_URL`` is set).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ehr_bridge.domain.session import build_risk_flag, session_bundle
from ehr_bridge.sim.records import RISK_ALERT
from ehr_bridge.sync.cycle import run_cycle, run_flow
from support.trusts import PHQ9_ITEMS, TrustHarness, score_bundle, trust_harness

ROUTINE_BUNDLES = 25
RISKY_PHQ9 = (*PHQ9_ITEMS[:8], 2)  # item 9 answered "more than half the days"


@pytest.fixture
def iaptus(tmp_path: Path) -> Iterator[TrustHarness]:
    with trust_harness("iaptus", tmp_path, referrals=2) as harness:
        yield harness


def _state(harness: TrustHarness):  # the simulator's records, as the duty team sees them
    return harness.trust.simulator.state


def _alerts(harness: TrustHarness) -> list[dict]:
    state = _state(harness)
    return [a for r in harness.referrals for a in state.list_items(r.trust_referral_id, RISK_ALERT)]


def _contacts(harness: TrustHarness) -> int:
    return len(harness.trust_contacts())


def _routine_backlog(harness: TrustHarness) -> None:
    """Session bundles with no risk, collected and queued, none written yet."""
    referral = harness.referrals[0]
    for number in range(1, ROUTINE_BUNDLES + 1):
        harness.submit(score_bundle(referral, "phq9", (*PHQ9_ITEMS[:8], 0), number=number))
    run_flow("collect", harness.conn, harness.store)


def test_a_phq9_item_9_risk_is_at_the_trust_before_any_of_the_routine_backlog(iaptus):
    _routine_backlog(iaptus)
    iaptus.submit(score_bundle(iaptus.referrals[1], "phq9", RISKY_PHQ9, number=1))

    counts = run_flow("risk", iaptus.conn, iaptus.store)

    assert counts["written"] == 1
    [alert] = _alerts(iaptus)
    assert (alert["level"], alert["priority"], alert["reason"]) == (
        "urgent",
        "urgent",
        "phq9_item9",
    )
    assert _contacts(iaptus) == 0  # the lane wrote the risk and nothing routine
    run_flow("risk", iaptus.conn, iaptus.store)
    iaptus.sync()  # now the routine backlog, with the risk claimed first if still due
    assert len(_alerts(iaptus)) == 1
    assert _contacts(iaptus) == ROUTINE_BUNDLES + 1


def test_a_provider_flag_reaches_the_trust_once_even_when_sent_again(iaptus):
    referral = iaptus.referrals[0]
    flag = build_risk_flag(
        flag_id="flag-1",
        patient_id=referral.patient_id,
        service_request_id=referral.service_request_id,
        raised=datetime(2026, 11, 3, 18, 5, tzinfo=UTC),
        concept=("248062006", "Self-injurious behavior"),
        level="immediate",
        shareable_text="Please call today",
    )
    bundle = session_bundle("b-flag", [flag])
    iaptus.submit(bundle)
    run_flow("risk", iaptus.conn, iaptus.store)
    iaptus.submit({**bundle, "id": "b-flag-again"})
    run_flow("risk", iaptus.conn, iaptus.store)
    iaptus.sync()
    [alert] = _alerts(iaptus)
    assert (alert["level"], alert["priority"]) == ("immediate", "stat")
    assert alert.get("summary") == "Please call today"


def test_the_trusts_acknowledgement_is_read_back_and_recorded(iaptus):
    iaptus.submit(score_bundle(iaptus.referrals[0], "phq9", RISKY_PHQ9, number=1))
    run_flow("risk", iaptus.conn, iaptus.store)
    [view] = iaptus.store.risks(iaptus.conn.name, open_only=True)
    assert view.outbox_state == "done" and view.acknowledged_at is None
    [alert] = _alerts(iaptus)
    trust_ref = iaptus.referrals[0].trust_referral_id
    _state(iaptus).acknowledge_risk_alert(trust_ref, alert["id"], {"by": "duty.clinician1"})

    counts = run_flow("risk", iaptus.conn, iaptus.store)

    assert counts["acknowledged"] == 1
    assert iaptus.store.risks(iaptus.conn.name, open_only=True) == []
    [view] = iaptus.store.risks(iaptus.conn.name)
    assert view.acknowledged_by == "duty.clinician1"


def test_the_risk_lane_never_waits_for_the_connections_other_flows(iaptus):
    iaptus.submit(score_bundle(iaptus.referrals[0], "phq9", RISKY_PHQ9, number=1))
    finished = threading.Event()
    with iaptus.conn.lock:  # a long push holds the connection's lock
        worker = threading.Thread(
            target=lambda: (run_flow("risk", iaptus.conn, iaptus.store), finished.set())
        )
        worker.start()
        assert finished.wait(30), "the risk lane waited for the connection's lock"
    worker.join()
    assert len(_alerts(iaptus)) == 1


def test_a_sync_cycle_writes_risks_too(iaptus):
    iaptus.submit(score_bundle(iaptus.referrals[0], "phq9", RISKY_PHQ9, number=1))
    run_cycle(iaptus.conn, iaptus.store)
    assert len(_alerts(iaptus)) == 1
