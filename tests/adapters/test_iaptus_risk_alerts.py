"""Risk alerts through the iaptus adapter: written once, found, and their acknowledgement read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ehr_bridge.adapters.base import RiskAcknowledgement, RiskAcknowledger, WriteItem
from ehr_bridge.adapters.iaptus import IaptusClient
from ehr_bridge.adapters.registry import create_adapter, specs
from ehr_bridge.config import AdapterConfig
from ehr_bridge.errors import TerminalError
from ehr_bridge.sim import TrustSimulator

TOKEN = "risk-token"
ALERT = {
    "level": "urgent",
    "priority": "urgent",
    "reason": "risk_assessment",
    "raised_at": "2026-11-10T19:41:00Z",
    "risk_code": "225444004",
    "summary": "Please call the client today.",
}


@pytest.fixture
def sim() -> Iterator[TrustSimulator]:
    with TrustSimulator(seed=41, referrals=3, token=TOKEN) as simulator:
        yield simulator


@pytest.fixture
def client(sim: TrustSimulator, tmp_path: Path) -> IaptusClient:
    (tmp_path / "token").write_text(TOKEN)
    config = AdapterConfig(adapter="iaptus", base_url=sim.api_url, token_file="token")
    adapter = create_adapter("trust", config, base_dir=tmp_path, key="t", provider_code="IESO01")
    assert isinstance(adapter, IaptusClient)
    return adapter


def item(reference: str = "risk-1") -> WriteItem:
    return WriteItem("risk_alert", "SR0000001", reference, dict(ALERT))


def test_iaptus_declares_risk_alerts_and_acknowledgements(client: IaptusClient) -> None:
    assert {"write:risk_alert", "read_acknowledgement"} <= specs()["iaptus"].capabilities
    assert isinstance(client, RiskAcknowledger)


def test_written_once_found_and_acknowledged(sim: TrustSimulator, client: IaptusClient) -> None:
    receipt = client.write(item())
    again = client.write(item())
    assert (again.trust_id, again.already_present) == (receipt.trust_id, True)
    found = client.find(item())
    assert found is not None and found.trust_id == receipt.trust_id
    assert client.acknowledgement(item(), receipt.trust_id) is None

    before = datetime.now(UTC)
    sim.state.acknowledge_risk_alert("SR0000001", receipt.trust_id, {"by": "duty.clinician1"})
    seen = client.acknowledgement(item(), receipt.trust_id)
    assert isinstance(seen, RiskAcknowledgement) and seen.by == "duty.clinician1"
    assert seen.at.tzinfo is not None and seen.at >= before.replace(microsecond=0)

    sim.state.acknowledge_risk_alert("SR0000001", receipt.trust_id, {"by": "x1", "close": True})
    assert client.acknowledgement(item(), receipt.trust_id) == seen  # closed: still that one


def test_a_name_where_the_staff_id_belongs_is_never_kept(
    sim: TrustSimulator, client: IaptusClient
) -> None:
    receipt = client.write(item())
    sim.state.edit_item(
        "SR0000001",
        "risk_alert",
        receipt.trust_id,
        {
            "status": "acknowledged",
            "acknowledged_at": "not a time",
            "acknowledged_by": "Dr Jo Bloggs",
        },
    )
    seen = client.acknowledgement(item(), receipt.trust_id)
    assert seen is not None and seen.by is None
    assert seen.at == datetime.fromisoformat(
        sim.state.get_item("SR0000001", "risk_alert", receipt.trust_id)["updated_at"]
    )


def test_read_back_lists_alerts_and_never_updates_them(client: IaptusClient) -> None:
    receipt = client.write(item())
    (listed,) = client.list_items("SR0000001", "risk_alert")
    assert (listed.trust_id, listed.fields["status"]) == (receipt.trust_id, "open")
    with pytest.raises(TerminalError, match="cannot be updated"):
        client.update(item(), receipt.trust_id)


def test_an_unknown_alert_is_an_error_not_an_answer(client: IaptusClient) -> None:
    with pytest.raises(TerminalError, match="404"):
        client.acknowledgement(item(), "RA9999999")
    note = WriteItem("clinical_note", "SR0000001", "n", {})
    with pytest.raises(TerminalError, match="not acknowledged"):
        client.acknowledgement(note, "CN0000001")


def test_the_simulator_refuses_a_wrongly_paired_priority(client: IaptusClient) -> None:
    wrong = WriteItem("risk_alert", "SR0000001", "risk-2", dict(ALERT, priority="routine"))
    with pytest.raises(TerminalError, match=r"422.*priority"):
        client.write(wrong)


def test_an_acknowledgement_needs_an_aware_time_and_an_id_shaped_by() -> None:
    with pytest.raises(ValueError, match="aware"):
        RiskAcknowledgement(at=datetime(2026, 11, 10, 20, 0))
    with pytest.raises(ValueError, match="staff id"):
        RiskAcknowledgement(at=datetime.now(UTC), by="Dr Jo Bloggs")
