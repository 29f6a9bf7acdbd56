"""The rest adapter is generic: with an ``api:`` section it also speaks the IAPTUS-style API.

Bearer auth, opaque page tokens in the body, ISO UTC cursors and string ids: everything the
dedicated ``iaptus`` adapter hard-codes, stated as data instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from ehr_bridge.adapters.base import WriteItem
from ehr_bridge.adapters.rest import create
from ehr_bridge.adapters.rest.client import RestClient
from ehr_bridge.sim import TrustSimulator

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "generic-token"


def _write(segment: str) -> str:
    path = f'"/referrals/{{trust_referral_id}}/{segment}"'
    return (
        f"      create: {{path: {path}, id: id, existing_id: existing_id}}\n"
        f"      find: {{path: {path}, query: {{client_reference: '{{client_reference}}'}},"
        " records: items, id: id}\n"
    )


API = (
    "api:\n"
    "  errors: {code: error, field: field}\n"
    "  referrals:\n"
    "    path: /referrals\n"
    "    query: {referred_on_to: '{provider_code}'}\n"
    "    records: items\n"
    "    updated_since: {param: updated_since}\n"
    "    page_size: {param: page_size, value: 3}\n"
    "    pagination: {style: token, param: page_token, next: next_page_token}\n"
    "  writes:\n"
    + "".join(
        f"    {kind}:\n" + _write(segment)
        for kind, segment in [
            ("care_contact", "care-contacts"),
            ("clinical_note", "clinical-notes"),
            ("assessment", "assessments"),
            ("referral_status", "status"),
            ("risk_alert", "risk-alerts"),
        ]
    )
)


@pytest.fixture
def adapter(tmp_path: Path) -> Iterator[tuple[RestClient, TrustSimulator]]:
    mapping = tmp_path / "iaptus-rest.yaml"
    mapping.write_text((ROOT / "mappings" / "iaptus.yaml").read_text("utf-8") + API, "utf-8")
    (tmp_path / "token").write_text(TOKEN)
    with TrustSimulator(seed=31, referrals=7, token=TOKEN) as sim:
        options = {"base_url": sim.api_url, "mapping": "iaptus-rest.yaml", "token_file": "token"}
        yield create(options, base_dir=tmp_path, key="trust", provider_code="IESO01"), sim


def test_pages_through_the_iaptus_listing(adapter: tuple[RestClient, TrustSimulator]) -> None:
    client, sim = adapter
    seen, token, pages = [], None, 0
    while True:
        page = client.fetch_referrals(updated_since=None, page=token)
        seen += [r["id"] for r in page.records]
        pages += 1
        if not page.next_page:
            break
        token = page.next_page
    referrals = [e["referral"] for e in sim.export()["referrals"]]
    assert sorted(seen) == sorted(r["id"] for r in referrals if r["referred_on_to"] == "IESO01")
    assert pages == 3
    middle = sorted(datetime.fromisoformat(r["updated_at"]) for r in referrals)[4]
    later = client.fetch_referrals(updated_since=middle, page=None).records
    assert all(datetime.fromisoformat(r["updated_at"]) >= middle for r in later)


def test_writes_and_finds_with_bearer_auth(adapter: tuple[RestClient, TrustSimulator]) -> None:
    client, sim = adapter
    referral = next(
        e["referral"]["id"]
        for e in sim.export()["referrals"]
        if e["referral"]["referred_on_to"] == "IESO01"
    )
    payload = {"client_reference": "g-1", "status": "accepted", "date": "2026-11-03"}
    item = WriteItem("referral_status", referral, "g-1", payload)
    assert client.find(item) is None
    receipt = client.write(item)
    assert receipt.trust_id.startswith("ST")
    again = client.write(item)
    assert again.trust_id == receipt.trust_id and again.already_present
    found = client.find(item)
    assert found is not None and found.trust_id == receipt.trust_id
