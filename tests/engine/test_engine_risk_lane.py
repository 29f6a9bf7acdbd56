"""A risk reaches the trust's duty team ahead of a routine backlog, exactly once.

The real flows against each kind of trust simulator on loopback (IAPTUS-style, PC-MIS over
the generic ``rest`` adapter, FHIR, HL7 v2 over MLLP), a real provider folder and Store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ehr_bridge.domain.session import build_risk_flag, session_bundle
from ehr_bridge.sim.records import RISK_ALERT
from ehr_bridge.store import NewRiskEvent, content_hash
from ehr_bridge.store.submissions import CollectedBundle
from ehr_bridge.sync.collect import collect_again
from ehr_bridge.sync.cycle import run_cycle, run_flow
from ehr_bridge.sync.risk_items import quarantined_risk_id
from support.trusts import PHQ9_ITEMS, TrustHarness, is_risk_oru, score_bundle, trust_harness

ROUTINE_BUNDLES = 25
RISKY_PHQ9 = (*PHQ9_ITEMS[:8], 2)  # item 9 answered "more than half the days"
DUTY = "duty.clinician1"


@dataclass(frozen=True)
class DutyDesk:
    """The trust's duty team's view of risk items, for one kind of trust."""

    #: (trust referral id, item id, the item's priority as the trust codes it)
    items: Callable[[TrustHarness], list[tuple[str, str, str]]]
    #: someone at the trust acknowledges the item
    acknowledge: Callable[[TrustHarness, str, str], None]
    #: the trust's coding of our priorities urgent and stat
    urgent: str
    stat: str


def _iaptus_items(harness: TrustHarness) -> list[tuple[str, str, str]]:
    state = harness.trust.simulator.state
    return [
        (r.trust_referral_id, a["id"], a["priority"])
        for r in harness.referrals
        for a in state.list_items(r.trust_referral_id, RISK_ALERT)
    ]


def _iaptus_ack(harness: TrustHarness, trust_ref: str, item_id: str) -> None:
    harness.trust.simulator.state.acknowledge_risk_alert(trust_ref, item_id, {"by": DUTY})


def _pcmis_items(harness: TrustHarness) -> list[tuple[str, str, str]]:
    state = harness.trust.simulator.state
    return [
        (r.trust_referral_id, str(a["RiskAlertId"]), a["Priority"])
        for r in harness.referrals
        for a in state.list_items(r.trust_referral_id, RISK_ALERT, None)
    ]


def _pcmis_ack(harness: TrustHarness, trust_ref: str, item_id: str) -> None:
    harness.trust.simulator.state.acknowledge_risk_alert(trust_ref, int(item_id), DUTY)


def _fhir_items(harness: TrustHarness) -> list[tuple[str, str, str]]:
    ours = {f"ServiceRequest/{r.trust_referral_id}": r.trust_referral_id for r in harness.referrals}
    return [
        (ours[task["basedOn"][0]["reference"]], task["id"], task["priority"])
        for task in harness.trust.simulator.risk_tasks()
        if task["basedOn"][0]["reference"] in ours
    ]


def _fhir_ack(harness: TrustHarness, trust_ref: str, item_id: str) -> None:
    harness.trust.simulator.acknowledge_task(item_id, owner=f"Practitioner/{DUTY}")


def _hl7_items(harness: TrustHarness) -> list[tuple[str, str, str]]:
    ours = {r.trust_referral_id for r in harness.referrals}
    return [
        (m["OBR"][0]["2"][0]["1"], m["MSH"][0]["10"][0]["1"], m["TQ1"][0]["9"][0]["1"])
        for m in harness.trust.messages("ORU^R01")
        if is_risk_oru(m) and m["OBR"][0]["2"][0]["1"] in ours
    ]


def _no_ack(harness: TrustHarness, trust_ref: str, item_id: str) -> None:
    """An HL7 v2 ACK is the interface engine's, never a person's: nothing to acknowledge."""


DESKS = {
    "hl7v2": DutyDesk(_hl7_items, _no_ack, "A", "S"),
    "iaptus": DutyDesk(_iaptus_items, _iaptus_ack, "urgent", "stat"),
    "pcmis": DutyDesk(_pcmis_items, _pcmis_ack, "P2", "P1"),
    "fhir": DutyDesk(_fhir_items, _fhir_ack, "urgent", "stat"),
}
#: trusts whose adapter reads the acknowledgement back (PC-MIS users acknowledge on screen)
ACKNOWLEDGING = ("iaptus", "fhir")


@pytest.fixture(params=sorted(DESKS))
def trust(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TrustHarness]:
    with trust_harness(request.param, tmp_path, referrals=2) as harness:
        yield harness


def _desk(harness: TrustHarness) -> DutyDesk:
    return DESKS[harness.kind]


def _scores(harness: TrustHarness) -> int:
    return len(harness.trust_scores())


def _routine_backlog(harness: TrustHarness) -> None:
    """Session bundles with no risk, collected and queued, none written yet."""
    referral = harness.referrals[0]
    for number in range(1, ROUTINE_BUNDLES + 1):
        harness.submit(score_bundle(referral, "phq9", (*PHQ9_ITEMS[:8], 0), number=number))
    run_flow("collect", harness.conn, harness.store)


def test_a_phq9_item_9_risk_is_at_the_trust_before_any_of_the_routine_backlog(trust):
    _routine_backlog(trust)
    trust.submit(score_bundle(trust.referrals[1], "phq9", RISKY_PHQ9, number=1))

    counts = run_flow("risk", trust.conn, trust.store)

    assert counts["written"] == 1
    [(trust_ref, _, priority)] = _desk(trust).items(trust)
    assert (trust_ref, priority) == (trust.referrals[1].trust_referral_id, _desk(trust).urgent)
    assert _scores(trust) == 0  # the lane wrote the risk and nothing routine
    run_flow("risk", trust.conn, trust.store)
    trust.sync()  # now the routine backlog
    assert len(_desk(trust).items(trust)) == 1
    assert _scores(trust) == ROUTINE_BUNDLES + 1


@pytest.mark.parametrize(("level", "priority"), [(None, "urgent"), ("immediate", "stat")])
def test_a_provider_flag_reaches_the_trust_once_even_when_sent_again(trust, level, priority):
    _routine_backlog(trust)
    referral = trust.referrals[0]
    flag = build_risk_flag(
        flag_id="flag-1",
        patient_id=referral.patient_id,
        service_request_id=referral.service_request_id,
        raised=datetime(2026, 11, 3, 18, 5, tzinfo=UTC),
        concept=("248062006", "Self-injurious behavior"),
        level=level or "urgent",
        shareable_text="Please call today",
    )
    if level is None:  # a Flag that states no level is urgent
        flag["extension"] = [e for e in flag["extension"] if not e["url"].endswith("risk-level")]
    trust.submit(session_bundle("b-flag", [flag]))
    run_flow("risk", trust.conn, trust.store)
    assert _scores(trust) == 0 and len(_desk(trust).items(trust)) == 1  # ahead of the backlog
    trust.submit(session_bundle("b-flag-again", [flag]))
    run_flow("risk", trust.conn, trust.store)
    trust.sync()
    [(_, _, held)] = _desk(trust).items(trust)
    assert held == getattr(_desk(trust), "urgent" if priority == "urgent" else "stat")
    [view] = trust.store.risks(trust.conn.name)
    assert (view.level, view.reason, view.outbox_state) == (
        level or "urgent",
        "provider_flag",
        "done",
    )


def test_the_trusts_acknowledgement_is_read_back_and_recorded(trust):
    trust.submit(score_bundle(trust.referrals[0], "phq9", RISKY_PHQ9, number=1))
    run_flow("risk", trust.conn, trust.store)
    [view] = trust.store.risks(trust.conn.name, open_only=True)
    assert view.outbox_state == "done" and view.acknowledged_at is None
    [(trust_ref, item_id, _)] = _desk(trust).items(trust)
    _desk(trust).acknowledge(trust, trust_ref, item_id)

    counts = run_flow("risk", trust.conn, trust.store)

    if trust.kind not in ACKNOWLEDGING:  # nothing to read: it stays open (and pages)
        assert counts["acknowledged"] == 0
        assert len(trust.store.risks(trust.conn.name, open_only=True)) == 1
        return
    assert counts["acknowledged"] == 1
    assert trust.store.risks(trust.conn.name, open_only=True) == []
    [view] = trust.store.risks(trust.conn.name)
    assert view.acknowledged_by == DUTY


def test_the_risk_lane_never_waits_for_the_connections_other_flows(trust):
    trust.submit(score_bundle(trust.referrals[0], "phq9", RISKY_PHQ9, number=1))
    finished = threading.Event()
    with trust.conn.lock:  # a long push holds the connection's lock
        worker = threading.Thread(
            target=lambda: (run_flow("risk", trust.conn, trust.store), finished.set())
        )
        worker.start()
        assert finished.wait(30), "the risk lane waited for the connection's lock"
    worker.join()
    assert len(_desk(trust).items(trust)) == 1


def test_a_sync_cycle_writes_risks_too(trust):
    trust.submit(score_bundle(trust.referrals[0], "phq9", RISKY_PHQ9, number=1))
    run_cycle(trust.conn, trust.store)
    assert len(_desk(trust).items(trust)) == 1


@pytest.fixture
def iaptus(tmp_path: Path) -> Iterator[TrustHarness]:
    with trust_harness("iaptus", tmp_path, referrals=2) as harness:
        yield harness


def test_a_refused_bundle_that_held_a_risk_is_followed_as_a_risk(iaptus):
    referral = iaptus.referrals[0]
    flag = build_risk_flag(
        flag_id="flag-uncoded",
        patient_id=referral.patient_id,
        service_request_id=referral.service_request_id,
        raised=datetime(2026, 11, 3, 18, 5, tzinfo=UTC),
        concept=("248062006", "Self-injurious behavior"),
    )
    flag["code"] = {"text": "risk"}  # no SNOMED coding: the bundle is refused
    iaptus.submit(session_bundle("b-uncoded", [flag]))
    run_flow("risk", iaptus.conn, iaptus.store)
    [entry] = iaptus.quarantined()
    assert entry.code == "risk_code"
    [view] = iaptus.store.risks(iaptus.conn.name, open_only=True)
    assert (view.origin, view.reason, view.referral_id) == (
        "quarantine",
        "provider_flag",
        referral.service_request_id,
    )
    assert view.failed and _desk(iaptus).items(iaptus) == []


def test_a_refused_risky_bundle_stored_on_retry_ends_its_quarantine_risk(iaptus):
    referral = iaptus.referrals[0]
    bundle = score_bundle(referral, "phq9", RISKY_PHQ9, number=1)
    refused = NewRiskEvent(
        id=quarantined_risk_id(iaptus.conn, content_hash(bundle)),
        referral_id=referral.service_request_id,
        outbox_key=None,
        origin="quarantine",
        level="urgent",
        reason="phq9_item9",
        raised_at=datetime(2026, 11, 3, 18, 5, tzinfo=UTC),
    )
    iaptus.store.save_submissions(
        iaptus.conn.name, [CollectedBundle("h-1", "x", None, (), (), risks=[refused])]
    )
    assert collect_again(iaptus.conn, iaptus.store, "h-1", bundle) is None
    views = {v.origin: v for v in iaptus.store.risks(iaptus.conn.name)}
    assert views["quarantine"].resolved_at is not None  # ended by the engine, audited
    assert views["session"].open and views["session"].outbox_state == "pending"


def test_the_risk_lane_never_gives_up_a_collect_lease_the_routine_collect_holds(iaptus):
    conn, store = iaptus.conn, iaptus.store
    assert store.take_flow_lease(conn.name, "collect", conn.owner, conn.lease_seconds)
    with conn.collect_lock:  # the routine collect is running in this process
        counts = run_flow("risk", conn, store)
    assert counts["collected"] == 0
    # still ours: another daemon cannot take collect over
    assert not store.take_flow_lease(conn.name, "collect", "other-host:1", conn.lease_seconds)
