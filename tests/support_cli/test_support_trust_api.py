"""The simulator's trust-side edits and item PUT, through the iaptus adapter's reader/updater."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ehr_bridge.adapters.base import TrustReader, TrustUpdater, WriteItem
from ehr_bridge.adapters.iaptus import IaptusClient
from ehr_bridge.adapters.registry import create_adapter, specs
from ehr_bridge.config import AdapterConfig
from ehr_bridge.errors import TerminalError
from ehr_bridge.sim import TrustSimulator
from ehr_bridge.sim.state import UnknownItemError, UnknownPatientError

TOKEN = "trust-api-token"
NOTE = {"authored_at": "2026-11-10T20:25:00Z", "title": "Session 1", "text": "Worked on sleep."}


@pytest.fixture
def sim() -> Iterator[TrustSimulator]:
    simulator = TrustSimulator(seed=31, referrals=4, hostile=1, token=TOKEN)
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def client(sim: TrustSimulator, tmp_path: Path) -> IaptusClient:
    (tmp_path / "token").write_text(TOKEN)
    config = AdapterConfig(adapter="iaptus", base_url=sim.api_url, token_file="token")
    adapter = create_adapter("trust", config, base_dir=tmp_path, key="t", provider_code="IESO01")
    assert isinstance(adapter, IaptusClient)
    return adapter


def test_iaptus_declares_and_has_the_support_capabilities(client: IaptusClient) -> None:
    assert {"read_items", "fetch_referral", "update_items"} <= specs()["iaptus"].capabilities
    assert isinstance(client, TrustReader) and isinstance(client, TrustUpdater)


def test_read_back_update_and_the_trust_side_edits(
    sim: TrustSimulator, client: IaptusClient
) -> None:
    item = WriteItem("clinical_note", "SR0000001", "ref-1", dict(NOTE))
    written = client.write(item)
    (read,) = client.list_items("SR0000001", "clinical_note")
    assert (read.trust_id, read.client_reference, read.version) == (written.trust_id, "ref-1", "1")
    assert read.fields["text"] == NOTE["text"]

    sim.state.edit_item("SR0000001", "clinical_note", written.trust_id, {"text": "Changed."})
    (edited,) = client.list_items("SR0000001", "clinical_note")
    assert edited.fields["text"] == "Changed." and edited.version == "2"
    assert edited.fields["updated_at"]

    client.update(item, written.trust_id)
    (restored,) = client.list_items("SR0000001", "clinical_note")
    assert restored.fields["text"] == NOTE["text"] and restored.version == "3"

    sim.state.delete_item("SR0000001", "clinical_note", written.trust_id)
    assert client.list_items("SR0000001", "clinical_note") == []
    with pytest.raises(TerminalError, match="404"):
        client.update(item, written.trust_id)


def test_update_refuses_another_client_reference_and_status_events(
    client: IaptusClient,
) -> None:
    written = client.write(WriteItem("clinical_note", "SR0000001", "ref-a", dict(NOTE)))
    other = WriteItem("clinical_note", "SR0000001", "ref-b", dict(NOTE))
    with pytest.raises(TerminalError, match=r"422.*client_reference"):
        client.update(other, written.trust_id)
    status = WriteItem(
        "referral_status", "SR0000001", "s", {"status": "accepted", "date": "2026-11-03"}
    )
    with pytest.raises(TerminalError, match="cannot be updated"):
        client.update(status, "ST0000001")


def test_fetch_one_referral_and_a_missing_one(client: IaptusClient) -> None:
    record = client.fetch_referral("SR0000002")
    assert record is not None and record["id"] == "SR0000002"
    assert client.fetch_referral("SR9999999") is None


def test_merge_refer_again_and_fix_at_the_trust(sim: TrustSimulator) -> None:
    state = sim.state
    keep = state.get_referral("SR0000001")["patient"]
    merged_local = state.get_referral("SR0000002")["patient"]["local_id"]
    assert state.merge_patients(keep["local_id"], merged_local) == ["SR0000002"]
    after = state.get_referral("SR0000002")
    assert after["patient"] == keep and after["version"] == 2
    with pytest.raises(UnknownPatientError):
        state.merge_patients(keep["local_id"], "P-none")

    again = state.add_referral(patient_of="SR0000001")
    assert again["patient"] == keep and again["id"] != "SR0000001"

    (hostile,) = [h for h in state.hostile.values() if h.referral_id]
    fixed = state.fix_hostile(hostile.referral_id or "")
    assert hostile.referral_id not in state.hostile_fields and fixed["version"] == 2
    with pytest.raises(TerminalError):
        state.fix_hostile("SR0000001")  # not malformed
    with pytest.raises(UnknownItemError):
        state.delete_item("SR0000001", "clinical_note", "CN9999999")
    assert len(state.fresh_nhs_number()) == 10
