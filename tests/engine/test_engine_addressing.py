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

import pytest

from ehr_bridge.adapters.hl7v2.peer import uk_referral
from ehr_bridge.config import load_config
from ehr_bridge.mapping import load_mapping
from ehr_bridge.sim import TrustSimulator
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import build_connections
from ehr_bridge.sync.deliver import deliver
from ehr_bridge.sync.pull import pull

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = sorted((ROOT / "mappings").glob("*.yaml"))
CONFIG = """
[database]
url = "sqlite:///state/ehr-bridge.db"

[[connection]]
name = "hl7-trust"
mapping = "{mapping}"
test_connection = true

[connection.provider_org]
code = "IESO01"

[connection.trust]
adapter = "hl7v2"
drop_folder = "hl7/in"
settle_seconds = 0

[connection.provider]
adapter = "folder"
path = "provider"
"""


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

    messages = [cancel(never_seen), uk_referral(cancelled_later), cancel(cancelled_later)]
    for order, message in enumerate(messages):  # arrival order: the drop folder's mtimes
        path = inbox / f"{order}.hl7"
        path.write_text(message)
        os.utime(path, (1_700_000_000 + order, 1_700_000_000 + order))
    try:
        counts = pull(conn, store)
        assert counts.skipped_unknown_cancels == 1
        (recorded,) = store.audit_events(action="pull.unknown_cancel")
        assert json.loads(recorded.detail)["trust_referral_id"] == never_seen["id"]
        stored = {r.trust_referral_id: r for r in store.list_referrals(conn.name)}
        assert set(stored) == {cancelled_later["id"]}  # its cancel, in the same page, applies
        assert stored[cancelled_later["id"]].status == "revoked"
        deliver(conn, store)
        delivered = [p.read_text() for p in (tmp_path / "provider").rglob("*.json")]
        assert not any(never_seen["id"] in text for text in delivered)
    finally:
        store.close()
