"""One message, one meaning: resends make no versions, reused ids are refused, echoes stay home.

A trust's interface engine resends (a new MSH-7 and MSH-10, CRLF instead of CR), reuses a
message id for a changed message, and, once we write back, shows our own status in the
record it sends next. The pull compares what a record *means* (the FHIR built from it)
with what is stored: a resend stores no version and delivers nothing; a reused id with other
content is quarantined naming it, the earlier version kept; a change that only reflects our
own write-back is kept in the lineage but not delivered again, while a change by the
trust's staff still is.
"""

from __future__ import annotations

import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hl7.client import MLLPClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehr_bridge.adapters.hl7v2 import Hl7v2Adapter
from ehr_bridge.adapters.hl7v2.peer import uk_referral
from ehr_bridge.domain.ids import artefact_key
from ehr_bridge.domain.session import build_episode_end, session_bundle
from ehr_bridge.sim import TrustSimulator
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.cycle import run_cycle
from ehr_bridge.sync.deliver import deliver
from ehr_bridge.sync.pull import pull
from support.hl7_drop import DropFolderTrust
from support.trusts import HarnessReferral, TrustHarness, trust_harness

ROOT = Path(__file__).resolve().parents[2]
Referral = dict[str, Any]


def _ours(seed: int = 5, count: int = 3) -> list[Referral]:
    exported = TrustSimulator(seed=seed, referrals=2 * count + 2).export()["referrals"]
    return [e["referral"] for e in exported if e["referral"]["referred_on_to"] == "IESO01"][:count]


class _Hl7Trust(DropFolderTrust):
    """The drop-folder connection, and how many versions a referral has."""

    def versions(self, trust_referral_id: str) -> int:
        (row,) = [
            r
            for r in self.store.list_referrals(self.conn.name)
            if r.trust_referral_id == trust_referral_id
        ]
        return len(self.store.referral_versions(row.id))

    def delivered_files(self) -> int:
        return len(list(self.provider.rglob("*.json")))


def _resend(message: str, *, control_id: str, sent: datetime) -> str:
    """The same referral as an interface engine resends it: new MSH-7 and MSH-10, CRLF."""
    fields = message.split("\r", 1)[0].split("|")
    fields[6], fields[9] = sent.strftime("%Y%m%d%H%M%S+0000"), control_id
    return "\r\n".join(["|".join(fields), *message.split("\r")[1:]])


def test_a_resend_stores_no_version_and_delivers_nothing(tmp_path: Path) -> None:
    trust = _Hl7Trust(tmp_path)
    referral = _ours()[0]
    message = uk_referral(referral)
    try:
        trust.drop(message)
        assert pull(trust.conn, trust.store).stored == 1
        assert deliver(trust.conn, trust.store).delivered == 1
        trust.drop(message)  # the very same bytes, again
        trust.drop(_resend(message, control_id="RESEND-1", sent=datetime(2026, 12, 1, tzinfo=UTC)))
        again = pull(trust.conn, trust.store)
        assert (again.stored, again.quarantined) == (0, 0)
        assert again.unchanged >= 2  # the closed-start cursor shows the first file again too
        assert trust.versions(referral["id"]) == 1
        counts = deliver(trust.conn, trust.store)
        assert (counts.delivered, counts.redelivered) == (0, 0)
        assert trust.delivered_files() == 1
    finally:
        trust.store.close()


def test_the_same_message_three_times_over_mllp_is_one_version(tmp_path: Path) -> None:
    """python-hl7's client sends one message three times: one referral, one version."""
    trust = _Hl7Trust(tmp_path)
    referral = _ours()[0]
    assert isinstance(trust.conn.source, Hl7v2Adapter)
    listener = trust.conn.source.listener(port=0).start()
    try:
        with MLLPClient("127.0.0.1", listener.port) as client:
            for _ in range(3):
                assert b"MSA|AA|" in client.send_message(uk_referral(referral))
        counts = pull(trust.conn, trust.store)
        assert (counts.stored, counts.unchanged) == (1, 2)
        assert trust.versions(referral["id"]) == 1
        assert deliver(trust.conn, trust.store).delivered == 1
    finally:
        listener.stop()
        trust.store.close()


def test_a_reused_message_id_with_other_content_is_quarantined_naming_msh10(
    tmp_path: Path,
) -> None:
    trust = _Hl7Trust(tmp_path)
    referral = _ours()[0]
    original = uk_referral(referral, control_id="MSG-0001")
    patient = {**referral["patient"], "postcode": "LS1 4AP"}
    changed = uk_referral({**referral, "patient": patient}, control_id="MSG-0001")
    assert changed != original
    try:
        trust.drop(original)
        trust.drop(changed)  # same MSH-10, a changed postcode: both in one page
        counts = pull(trust.conn, trust.store)
        assert (counts.stored, counts.quarantined) == (1, 1)
        (entry,) = trust.store.quarantine_rows(connection=trust.conn.name)
        assert (entry.code, entry.field, entry.record_ref) == (
            "version_reused",
            "MSH-10",
            referral["id"],
        )
        assert "LS1 4AP" not in entry.reason
        (row,) = trust.store.list_referrals(trust.conn.name)
        stored = trust.store.resource("Patient", row.patient_id)
        assert stored is not None
        assert "LS1 4AP" not in str(stored)  # the earlier version is the one kept
        assert trust.versions(referral["id"]) == 1
        # the trust's fix: the change under a message id of its own is a real change
        trust.drop(uk_referral({**referral, "patient": patient}, control_id="MSG-0002"))
        fixed = pull(trust.conn, trust.store)
        assert fixed.stored == 1
        assert trust.versions(referral["id"]) == 2
        assert trust.store.quarantine_rows(connection=trust.conn.name) == []
    finally:
        trust.store.close()


_CONTROL_IDS = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-", min_size=1, max_size=20)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(min_value=0, max_value=10_000),
    control_id=_CONTROL_IDS,
    later=st.integers(min_value=1, max_value=10_000_000),
)
def test_property_a_resend_of_any_accepted_referral_stores_and_delivers_nothing(
    seed: int, control_id: str, later: int
) -> None:
    """For any REF^I12 the mapping accepts: new MSH-7 / MSH-10 and CRLF is no new version."""
    referral = _ours(seed=seed, count=1)[0]
    message = uk_referral(referral)
    with tempfile.TemporaryDirectory() as folder:
        trust = _Hl7Trust(Path(folder))
        try:
            trust.drop(message)
            first = pull(trust.conn, trust.store)
            if first.stored != 1:  # the simulator also writes refusable referrals
                assert first.quarantined == 1
                return
            deliver(trust.conn, trust.store)
            sent = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=later)
            trust.drop(_resend(message, control_id=f"R{control_id}", sent=sent))
            again = pull(trust.conn, trust.store)
            assert (again.stored, again.quarantined) == (0, 0)
            assert trust.versions(referral["id"]) == 1
            counts = deliver(trust.conn, trust.store)
            assert (counts.delivered, counts.redelivered) == (0, 0)
        finally:
            trust.store.close()


# --- echoes: our own write-backs coming back in the trust's record --------------------
def _discharge(h: TrustHarness, referral: HarnessReferral) -> None:
    """The provider ends the course; collect and push write the discharge to the trust."""
    episode = build_episode_end(
        episode_id=f"eoc-{referral.service_request_id}",
        patient_id=referral.patient_id,
        service_request_id=referral.service_request_id,
        start=datetime(2026, 10, 1).date(),
        end=datetime(2026, 11, 20).date(),
        end_code="46",
    )
    h.submit(session_bundle(f"end-{referral.service_request_id}", [episode]))
    h.sync()
    key = artefact_key(h.conn.name, "referral_status", "discharged", referral.service_request_id)
    assert h.outbox_states().get(key) == "done", h.dead_errors()


def _pull_and_deliver(conn: Connection, store: Store) -> dict[str, Any]:
    report = run_cycle(conn, store, flows=("pull", "deliver"))
    assert "error" not in report["pull"] and "error" not in report["deliver"], report
    return report


#: whether the trust's referral record shows our discharge: the IAPTUS-style and PC-MIS
#: records carry the status we write; the FHIR trust takes it as a Task, and its
#: ServiceRequest stays as the trust's clinicians left it
SHOWS_OUR_STATUS = {"iaptus": True, "pcmis": True, "fhir": False}


@pytest.mark.parametrize("kind", sorted(SHOWS_OUR_STATUS))
def test_our_discharge_coming_back_is_versioned_but_not_delivered_again(
    kind: str, tmp_path: Path
) -> None:
    with trust_harness(kind, tmp_path, referrals=1) as h:  # type: ignore[arg-type]
        (referral,) = h.referrals
        _discharge(h, referral)
        report = _pull_and_deliver(h.conn, h.store)
        assert report["pull"]["stored"] == 0
        assert report["deliver"]["delivered"] + report["deliver"]["redelivered"] == 0
        versions = h.store.referral_versions(referral.service_request_id)
        assert report["pull"]["echoes"] == int(SHOWS_OUR_STATUS[kind])
        if SHOWS_OUR_STATUS[kind]:
            assert [v.echo for v in versions] == [False, True]
            assert versions[-1].status == "completed"
        else:
            assert [v.echo for v in versions] == [False]
        again = _pull_and_deliver(h.conn, h.store)
        assert (again["pull"]["stored"], again["pull"]["echoes"]) == (0, 0)


def test_iaptus_echo_is_recognised_and_a_staff_change_after_it_is_delivered(
    tmp_path: Path,
) -> None:
    with trust_harness("iaptus", tmp_path, referrals=2) as h:
        first, second = h.referrals
        _discharge(h, first)
        report = _pull_and_deliver(h.conn, h.store)
        assert (report["pull"]["echoes"], report["pull"]["stored"]) == (1, 0)
        simulator = h.trust.simulator  # type: ignore[attr-defined]
        # the trust's staff edit the discharged referral's patient: that is news
        simulator.state.update_referral(
            first.trust_referral_id, {"patient": {"postcode": "LS1 4AP"}}
        )
        # and discharge the other one themselves: no write-back of ours says so
        simulator.state.update_referral(second.trust_referral_id, {"status": "discharged"})
        report = _pull_and_deliver(h.conn, h.store)
        assert (report["pull"]["stored"], report["pull"]["echoes"]) == (2, 0)
        assert report["deliver"]["redelivered"] == 2


def test_fhir_staff_change_is_delivered_even_after_an_echo(tmp_path: Path) -> None:
    with trust_harness("fhir", tmp_path, referrals=1) as h:
        (referral,) = h.referrals
        _discharge(h, referral)
        _pull_and_deliver(h.conn, h.store)
        simulator = h.trust.simulator  # type: ignore[attr-defined]
        request = next(
            r
            for r in simulator.store.all_of("ServiceRequest")
            if any(i.get("value") == referral.trust_referral_id for i in r.get("identifier", []))
            or r["id"] == referral.trust_referral_id
        )
        simulator.store.put(
            {
                **request,
                "reasonCode": [
                    {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "F41.1"}]}
                ],
            }
        )
        report = _pull_and_deliver(h.conn, h.store)
        assert (report["pull"]["stored"], report["pull"]["echoes"]) == (1, 0)
        assert report["deliver"]["redelivered"] == 1


def test_resend_helper_changes_only_msh7_msh10_and_line_ends() -> None:
    message = uk_referral(_ours()[0])
    resent = _resend(message, control_id="X1", sent=datetime(2026, 12, 1, tzinfo=UTC))
    assert "\r\n" in resent
    assert re.sub(r"^MSH(\|[^|]*){9}", "", resent.replace("\r\n", "\r")) == re.sub(
        r"^MSH(\|[^|]*){9}", "", message
    )
