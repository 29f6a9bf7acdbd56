"""Every sample HL7 file maps, or is quarantined with a reason naming segment and field.

The files go through the real pull flow (drop folder, decode, mapping, domain checks, SQLite)
and the outcome of each one is pinned here. The public samples in ``shared/samples/hl7v2``
are US messages; none of them is a Talking Therapies referral, so none maps. The four
``uk_*`` fixtures are referrals written to the UK conventions the mapping expects.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from ehr_bridge.adapters.folder import FolderProvider
from ehr_bridge.adapters.hl7v2 import create
from ehr_bridge.domain.referral import ProviderRef
from ehr_bridge.mapping import load_mapping
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.pull import pull

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures" / "hl7v2"
NOT_A_REFERRAL = ("status", 'MSH[0]."9"')  # message type not REF^I12/I13/I14
#: PRD-3 "RT" names another provider (PLN5010): left alone, neither stored nor quarantined
NOT_OURS = ("referred_on_to", 'PRD[?"1"[0]."1" == \'RT\'] | [0]."7"')
#: file -> None (maps), NOT_OURS, or (field, the segment and field its reason names)
OUTCOMES: dict[str, tuple[str, str] | None] = {
    "medplum_ACK.hl7": NOT_A_REFERRAL,
    "medplum_ADT-A04_epic.hl7": NOT_A_REFERRAL,
    "msftconv_ADT-A04-01.hl7": NOT_A_REFERRAL,
    "msftconv_ADT-A08-01.hl7": NOT_A_REFERRAL,
    "msftconv_ADT-A08-02.hl7": NOT_A_REFERRAL,
    "msftconv_ADT04-23.hl7": NOT_A_REFERRAL,
    "msftconv_ADT04-251.hl7": NOT_A_REFERRAL,
    "msftconv_LAB-ORU-1.hl7": NOT_A_REFERRAL,
    "msftconv_LAB-ORU-2.hl7": NOT_A_REFERRAL,
    "msftconv_LRI_2.0-NG_CBC_Typ_Message.hl7": NOT_A_REFERRAL,
    "msftconv_MDM-T02-01.hl7": NOT_A_REFERRAL,
    "msftconv_MDM-T02-02.hl7": NOT_A_REFERRAL,
    "msftconv_MDM-T02-03.hl7": NOT_A_REFERRAL,
    "msftconv_ORU-R01-01.hl7": NOT_A_REFERRAL,
    "msftconv_ORU-R01-RMGEAD.hl7": NOT_A_REFERRAL,
    "msftconv_REF-I12-01.hl7": NOT_OURS,
    "msftconv_REF-I12-02.hl7": NOT_OURS,
    "msftconv_REF-I14-01.hl7": NOT_OURS,
    "msftconv_SIU-S12-01.hl7": NOT_A_REFERRAL,
    "msftconv_SIU-S12-02.hl7": NOT_A_REFERRAL,
    "msftconv_SIU-S12_1.hl7": NOT_A_REFERRAL,
    "uk_REF-I12-01-gp.hl7": None,
    "uk_REF-I12-02-self.hl7": None,
    "uk_REF-I12-04-latin1-dtm.hl7": None,
    "uk_REF-I14-03-cancel.hl7": None,
}
NAMES_SEGMENT_AND_FIELD = re.compile(r'\b([A-Z][A-Z0-9]{2})(\[[^\]]*\])?\."(\d+)"|\bMSH-\d+\b')


def test_the_outcome_list_covers_every_fixture_and_every_shared_sample() -> None:
    assert set(OUTCOMES) == {p.name for p in FIXTURES.glob("*.hl7")}
    shared = ROOT.parent / "shared" / "samples" / "hl7v2"
    if shared.is_dir():  # beside the repository in development and CI
        assert {p.name for p in shared.glob("*.hl7")} <= set(OUTCOMES)


@pytest.fixture(scope="module")
def pulled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, str]:
    root = tmp_path_factory.mktemp("samples")
    adapter = create(
        # a page per file: the cancel comes a page after its referral, as from a trust that
        # sends them apart (one page holding both is one version, the cancel: see
        # tests/engine/test_engine_addressing.py)
        {"drop_folder": "in", "settle_seconds": 0, "page_size": 1},
        base_dir=root,
        key="trust",
        provider_code="IESO01",
    )
    for order, name in enumerate(sorted(OUTCOMES)):  # the cancel arrives after its referral
        target = root / "in" / name
        shutil.copyfile(FIXTURES / name, target)
        os.utime(target, (1_700_000_000 + order, 1_700_000_000 + order))
    store = Store(f"sqlite:///{root / 'state.db'}")
    conn = Connection(
        name="samples",
        mapping=load_mapping(ROOT / "mappings" / "hl7v2-ref-i12.yaml"),
        source=adapter,
        writer=adapter,
        provider=FolderProvider(root / "provider"),
        provider_ref=ProviderRef("IESO01", "Online therapy provider"),
        test_connection=True,  # synthetic patients: test-range NHS numbers
    )
    counts = pull(conn, store)
    assert counts.seen == len(OUTCOMES)
    assert counts.skipped_not_ours == sum(outcome == NOT_OURS for outcome in OUTCOMES.values())
    yield store, conn.name
    store.close()


def _file(row_payload: str) -> str:
    return str(json.loads(row_payload)["file"]).split("/")[-1].split("-", 1)[1]


def test_each_file_has_its_pinned_outcome(pulled: tuple[Store, str]) -> None:
    store, connection = pulled
    # every entry, also ones a later message for the same referral id superseded
    rows = store.quarantine_rows(connection=connection, state=None)
    quarantined = {_file(q.payload): q for q in rows}
    for name, expected in OUTCOMES.items():
        if expected is None or expected == NOT_OURS:
            assert name not in quarantined, quarantined[name].reason
            continue
        entry = quarantined[name]
        field, where = expected
        assert entry.field == field, (name, entry.reason)
        assert where in entry.reason, (name, entry.reason)
        assert NAMES_SEGMENT_AND_FIELD.search(entry.reason), (name, entry.reason)


def test_the_uk_referrals_are_stored_and_the_cancel_revokes_its_referral(
    pulled: tuple[Store, str],
) -> None:
    store, connection = pulled
    referrals = {r.trust_referral_id: r for r in store.list_referrals(connection)}
    assert set(referrals) == {"SR0000123", "SR0000124", "SR0000125"}
    assert referrals["SR0000123"].status == "revoked"
    assert referrals["SR0000124"].status == "active"


def test_no_reason_carries_patient_data(pulled: tuple[Store, str]) -> None:
    store, connection = pulled
    reasons = " ".join(q.reason for q in store.quarantine_rows(connection=connection))
    for value in ("EVERYMAN", "ADAM", "19610615", "MAINSTREET", "9434765919", "O'BRIEN", "SÍLE"):
        assert value not in reasons
