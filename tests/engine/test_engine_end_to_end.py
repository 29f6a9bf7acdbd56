"""The spine, end to end: checked through the simulator's own API, not our tables."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import select

from ehr_bridge.domain.validate import validate_resource
from ehr_bridge.store import ResourceRow
from support.bridge import Bridge, running_bridge
from support.fhir_schema import assert_valid_r4

TOOL_CODES = {"phq9": "720433000", "gad7": "445455005", "wsas": "LOCAL-WSAS"}


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> Bridge:
    workdir = tmp_path_factory.mktemp("e2e")
    with running_bridge(workdir, seed=3, referrals=8) as bridge:
        bridge.settle()
        yield bridge


def _trust_items(bridge: Bridge, trust_id: str, collection: str) -> list[dict]:
    return bridge.api(f"/referrals/{trust_id}/{collection}")["items"]


def test_every_referral_is_delivered_to_the_provider(settled: Bridge) -> None:
    listing = settled.api("/referrals", referred_on_to="IESO01", page_size="500")["items"]
    delivered = sorted(p.stem for p in settled.platform.referrals_dir.glob("*.json"))
    trust_ids = sorted(settled.trust_referral_id(sr) for sr in delivered)
    assert trust_ids == sorted(r["id"] for r in listing)
    assert len(trust_ids) == 8


def test_every_session_artefact_is_at_the_trust_exactly_once(settled: Bridge) -> None:
    expected = settled.platform.expected_artefacts()
    assert expected, "the platform produced nothing"
    by_referral: dict[str, list] = {}
    for artefact in expected:
        by_referral.setdefault(artefact.service_request_id, []).append(artefact)
    for sr_id, artefacts in by_referral.items():
        trust_id = settled.trust_referral_id(sr_id)
        contacts = _trust_items(settled, trust_id, "care-contacts")
        notes = _trust_items(settled, trust_id, "clinical-notes")
        scores = _trust_items(settled, trust_id, "assessments")
        encounters = [a for a in artefacts if a.kind == "encounter"]
        assert Counter(
            (c["date"], c["time"], c["duration_minutes"], c["attendance"]) for c in contacts
        ) == Counter(
            (a.at.date().isoformat(), a.at.strftime("%H:%M"), a.duration_minutes, a.attendance)
            for a in encounters
        )
        assert sorted(n["text"] for n in notes) == sorted(
            a.text for a in artefacts if a.kind == "note"
        )
        assert Counter((s["tool_code"], s["score"]) for s in scores) == Counter(
            (TOOL_CODES[a.measure], a.total) for a in artefacts if a.kind == "score"
        )
        contact_ids = {c["id"] for c in contacts}
        assert all(n["care_contact_id"] in contact_ids for n in notes)
        assert all(s["care_contact_id"] in contact_ids for s in scores)
        for items in (contacts, notes, scores):
            references = [i["client_reference"] for i in items]
            assert len(references) == len(set(references))


def test_referral_status_is_written_back(settled: Bridge) -> None:
    for sr_path in settled.platform.referrals_dir.glob("*.json"):
        trust_id = settled.trust_referral_id(sr_path.stem)
        events = [e["status"] for e in _trust_items(settled, trust_id, "status")]
        assert events == ["accepted", "discharged"]
        assert settled.api(f"/referrals/{trust_id}")["status"] == "discharged"


def test_a_second_sync_writes_nothing_new(settled: Bridge) -> None:
    before = settled.simulator.export()
    report = settled.cycle()
    assert report["push"]["written"] == 0
    assert report["deliver"]["delivered"] == 0
    assert report["collect"]["stored"] == 0
    after = settled.simulator.export()
    for b, a in zip(before["referrals"], after["referrals"], strict=True):
        for key in ("care_contacts", "clinical_notes", "assessments", "status_events"):
            assert a[key] == b[key]
    # that cycle re-read our own status updates (the trust bumped those records); now still
    report = settled.cycle()
    assert report["pull"]["stored"] == 0
    assert report["deliver"] == {"delivered": 0, "redelivered": 0, "failed": 0}
    assert report["push"]["written"] == 0


def test_every_stored_fhir_resource_is_valid_r4(settled: Bridge) -> None:
    with settled.store.session() as session:
        rows = list(session.exec(select(ResourceRow)).all())
    kinds = Counter(r.resource_type for r in rows)
    assert {
        "Patient",
        "ServiceRequest",
        "Encounter",
        "Observation",
        "QuestionnaireResponse",
        "DocumentReference",
        "EpisodeOfCare",
    } <= set(kinds)
    for row in rows:
        resource = settled.store.resource(row.resource_type, row.id)
        assert resource is not None
        assert_valid_r4(resource)
        assert validate_resource(resource) == resource


def test_note_text_is_encrypted_at_rest(settled: Bridge) -> None:
    with settled.store.session() as session:
        rows = list(session.exec(select(ResourceRow)).all())
    notes = [r for r in rows if r.resource_type == "DocumentReference"]
    assert notes and all(r.key_id for r in notes)
    for row in notes:
        document = settled.store.resource("DocumentReference", row.id)
        assert document is not None
        attachment = document["content"][0]["attachment"]["data"]
        assert attachment not in row.body and '"resourceType"' not in row.body


def test_hostile_referrals_are_quarantined_naming_the_field(tmp_path: Path) -> None:
    with running_bridge(tmp_path, seed=5, referrals=6, hostile=20) as bridge:
        bridge.cycle()
        quarantine = bridge.store.quarantine_rows(connection=bridge.conn.name)
        by_record = {q.record_ref: q for q in quarantine}
        expected = bridge.simulator.state.hostile_fields
        assert len(quarantine) == 20
        for referral_id, field in expected.items():
            entry = by_record[referral_id]
            # a missing object is named by its first required field, e.g. patient.local_id
            assert entry.field is not None
            assert entry.field == field or entry.field.startswith(field + "."), entry.reason
            assert entry.field in entry.reason
        unkeyed = [q for q in quarantine if q.record_ref.startswith("sha256:")]
        assert len(unkeyed) == len(bridge.simulator.state.hostile_unkeyed)
        assert bridge.store.referral_counts(bridge.conn.name) == {"pulled": 6, "delivered": 6}
        bridge.cycle()  # quarantined records are not added again on the next pull
        assert len(bridge.store.quarantine_rows(connection=bridge.conn.name)) == 20
