"""Only referrals addressed to our provider are taken; another provider's are never stored.

A trust feed (an interface engine's HL7 v2 stream, say) may carry every onward referral of
the service. Taking one addressed elsewhere would hand a patient's details to a provider
they were never referred to, so the pull reads the addressee first and leaves such a
record alone: not stored, not quarantined (that would store the data too), not delivered.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.adapters.hl7v2.peer import uk_referral
from ehr_bridge.config import load_config
from ehr_bridge.mapping import load_mapping
from ehr_bridge.sim import TrustSimulator, fhir_search
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import build_connections
from ehr_bridge.sync.deliver import deliver
from ehr_bridge.sync.pull import pull
from support.hl7_drop import CONFIG
from support.trusts import TrustHarness, trust_harness

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = sorted((ROOT / "mappings").glob("*.yaml"))


@pytest.mark.parametrize("mapping_path", MAPPINGS, ids=lambda p: p.stem)
def test_the_addressee_is_read_alone_exactly_as_the_full_mapping_reads_it(
    mapping_path: Path,
) -> None:
    mapping = load_mapping(mapping_path)
    cases = sorted(mapping_path.with_suffix(".golden").glob("referral-*.facts.json"))
    assert cases, f"{mapping_path.name} has no referral golden cases"
    for facts_path in cases:
        record = json.loads(
            facts_path.with_name(facts_path.name.replace(".facts.", ".input.")).read_text()
        )
        facts = json.loads(facts_path.read_text())
        assert mapping.addressee(record) == facts["referred_on_to"], facts_path.name


def _referrals() -> list[dict]:
    exported = TrustSimulator(seed=5, referrals=6).export()["referrals"]
    return [e["referral"] for e in exported if e["referral"]["referred_on_to"] == "IESO01"][:3]


def test_another_providers_referral_in_the_feed_is_never_stored_or_delivered(
    tmp_path: Path,
) -> None:
    (tmp_path / "ehr-bridge.toml").write_text(
        CONFIG.format(mapping=ROOT / "mappings" / "hl7v2-ref-i12.yaml")
    )
    config = load_config(tmp_path / "ehr-bridge.toml")
    (conn,) = build_connections(config)
    store = Store(config.database_url())
    inbox = tmp_path / "hl7" / "in"
    inbox.mkdir(parents=True, exist_ok=True)
    ours, elsewhere, moved = _referrals()
    elsewhere = {**elsewhere, "referred_on_to": "OTHER99"}
    for referral in (ours, elsewhere, moved):
        (inbox / f"{referral['id']}.hl7").write_text(uk_referral(referral))
    try:
        first = pull(conn, store)
        assert (first.stored, first.skipped_not_ours, first.quarantined) == (2, 1, 0)
        stored = {r.trust_referral_id for r in store.list_referrals(conn.name)}
        assert stored == {ours["id"], moved["id"]}
        deliver(conn, store)
        delivered = list((tmp_path / "provider").rglob("*.json"))
        assert len(delivered) == 2
        assert not any(elsewhere["id"] in p.read_text() for p in delivered)

        # a referral we hold that the trust now addresses elsewhere: set aside for support
        moved_on = {**moved, "referred_on_to": "OTHER99", "version": 2}
        (inbox / f"{moved['id']}-2.hl7").write_text(uk_referral(moved_on))
        second = pull(conn, store)
        assert (second.quarantined, second.skipped_not_ours) == (1, 0)
        (entry,) = store.quarantine_rows(connection=conn.name)
        assert (entry.code, entry.field) == ("readdressed", "referred_on_to")
    finally:
        store.close()


def test_a_cancel_for_a_referral_we_never_held_is_left_alone(tmp_path: Path) -> None:
    """REF^I14 for a referral never seen: nothing to cancel, no patient details delivered."""
    (tmp_path / "ehr-bridge.toml").write_text(
        CONFIG.format(mapping=ROOT / "mappings" / "hl7v2-ref-i12.yaml")
    )
    config = load_config(tmp_path / "ehr-bridge.toml")
    (conn,) = build_connections(config)
    store = Store(config.database_url())
    inbox = tmp_path / "hl7" / "in"
    inbox.mkdir(parents=True, exist_ok=True)
    never_seen, cancelled_later = _referrals()[:2]

    def cancel(referral: dict) -> str:
        return uk_referral({**referral, "version": 2}).replace("REF^I12^REF_I12", "REF^I14^REF_I12")

    def arrive(order: int, message: str) -> None:  # arrival order: the drop folder's mtimes
        path = inbox / f"{order}.hl7"
        path.write_text(message)
        os.utime(path, (1_700_000_000 + order, 1_700_000_000 + order))

    arrive(0, cancel(never_seen))
    arrive(1, uk_referral(cancelled_later))
    try:
        counts = pull(conn, store)
        assert (counts.skipped_unknown_cancels, counts.stored) == (1, 1)
        (recorded,) = store.audit_events(action="pull.unknown_cancel")
        assert json.loads(recorded.detail)["trust_referral_id"] == never_seen["id"]
        # the cancel of a referral we hold applies
        arrive(2, cancel(cancelled_later))
        pull(conn, store)
        stored = {r.trust_referral_id: r for r in store.list_referrals(conn.name)}
        assert set(stored) == {cancelled_later["id"]}
        assert stored[cancelled_later["id"]].status == "revoked"
        deliver(conn, store)
        delivered = [p.read_text() for p in (tmp_path / "provider").rglob("*.json")]
        assert not any(never_seen["id"] in text for text in delivered)
    finally:
        store.close()


def test_a_referral_and_its_cancel_in_one_page_are_one_version_the_cancel(
    tmp_path: Path,
) -> None:
    """Referred and cancelled before we looked: the page's last word counts; nothing is sent."""
    (tmp_path / "ehr-bridge.toml").write_text(
        CONFIG.format(mapping=ROOT / "mappings" / "hl7v2-ref-i12.yaml")
    )
    config = load_config(tmp_path / "ehr-bridge.toml")
    (conn,) = build_connections(config)
    store = Store(config.database_url())
    inbox = tmp_path / "hl7" / "in"
    inbox.mkdir(parents=True, exist_ok=True)
    referral = _referrals()[0]
    cancel = uk_referral({**referral, "version": 2}).replace("REF^I12^REF_I12", "REF^I14^REF_I12")
    for order, message in enumerate([uk_referral(referral), cancel]):
        path = inbox / f"{order}.hl7"
        path.write_text(message)
        os.utime(path, (1_700_000_000 + order, 1_700_000_000 + order))
    try:
        counts = pull(conn, store)
        assert (counts.collapsed, counts.skipped_unknown_cancels, counts.stored) == (1, 1, 0)
        assert store.list_referrals(conn.name) == []
        (note,) = store.quarantine_rows(connection=conn.name)
        assert (note.code, note.record_ref) == ("duplicate_in_page", referral["id"])
    finally:
        store.close()


def _ignore_the_provider_filter(h: TrustHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the simulated trust answer with its whole feed, as a real API may do.

    A trust API without a "referred on to" filter (or a FHIR server that ignores a search
    parameter it does not support, as the FHIR search rules allow) sends every onward
    referral of the service: the pull's own check must be what keeps the others out.
    """
    if h.kind == "fhir":
        monkeypatch.setitem(fhir_search._MATCHERS, "performer:identifier", lambda _v: _any)
        return
    state = h.trust.simulator.state  # type: ignore[attr-defined]
    original = state.list_referrals
    if h.kind == "iaptus":

        def whole(**kwargs: Any) -> Any:
            return original(**{**kwargs, "referred_on_to": None})
    else:

        def whole(**kwargs: Any) -> Any:
            return original(**{**kwargs, "service": None})

    monkeypatch.setattr(state, "list_referrals", whole)


def _any(_resource: dict) -> bool:
    return True


@pytest.mark.parametrize("kind", ["iaptus", "pcmis", "fhir"])
def test_rest_and_fhir_trusts_hand_over_only_our_referrals(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trust sends as many referrals for OTHER01 as for us: none is stored or sent."""
    with trust_harness(kind, tmp_path, referrals=3) as h:  # type: ignore[arg-type]
        ours = {r.trust_referral_id for r in h.referrals}
        assert len(ours) == 3
        _ignore_the_provider_filter(h, monkeypatch)
        # the whole feed, from the start, under a cursor of its own
        again = pull(h.conn, h.store, cursor_name="whole-feed")
        assert again.skipped_not_ours == again.seen - len(ours) > 0
        assert (again.stored, again.quarantined) == (0, 0)
        stored = {r.trust_referral_id for r in h.store.list_referrals(h.conn.name)}
        assert stored == ours
        assert h.quarantined() == []
        delivered = [p.read_text() for p in (tmp_path / "provider").rglob("*.json")]
        assert len(delivered) == len(ours)
