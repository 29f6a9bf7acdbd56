"""Risk alerts on a FHIR trust: a Flag and its Task in one transaction, and the Task read back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from ehr_bridge.adapters.base import RiskAcknowledgement, RiskAcknowledger, WriteItem
from ehr_bridge.adapters.fhir import CLIENT_REFERENCE_SYSTEM, FhirTrust, create_trust
from ehr_bridge.errors import TerminalError, TransientError
from ehr_bridge.mapping import load_mapping
from ehr_bridge.sim.faults import Fault
from ehr_bridge.sim.fhir_server import FhirServerSimulator

TOKEN = "risk-fhir-token"
MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
OURS = {"system": CLIENT_REFERENCE_SYSTEM, "value": "risk-ref-1"}


@pytest.fixture
def sim() -> Iterator[FhirServerSimulator]:
    with FhirServerSimulator.trust(seed=6, referrals=4, token=TOKEN) as server:
        yield server


@pytest.fixture
def adapter(sim: FhirServerSimulator, tmp_path: Path) -> FhirTrust:
    (tmp_path / "token").write_text(TOKEN)
    options = {"base_url": sim.base_url, "token_file": "token", "read_attempts": 1}
    return create_trust(options, base_dir=tmp_path, key="trust", provider_code="IESO01")


def referral(sim: FhirServerSimulator) -> dict[str, Any]:
    return sim.store.all_of("ServiceRequest")[0]


def item(sim: FhirServerSimulator, reference: str = "risk-ref-1", **context: Any) -> WriteItem:
    source = json.loads(
        (MAPPINGS / "fhir-r4.golden" / "risk-alert-01-immediate.input.json").read_text()
    )
    request_id = referral(sim)["id"]
    merged = dict(source["context"], client_reference=reference, trust_referral_id=request_id)
    payload = load_mapping(MAPPINGS / "fhir-r4.yaml").outbound(
        "risk_alert", source["resource"], {**merged, **context}
    )
    return WriteItem("risk_alert", request_id, reference, payload)


def test_the_flag_and_its_task_are_written_together_once(
    sim: FhirServerSimulator, adapter: FhirTrust
) -> None:
    assert isinstance(adapter, RiskAcknowledger)
    receipt = adapter.write(item(sim))
    assert receipt.trust_id.startswith("Task/") and not receipt.already_present
    (flag,) = sim.store.all_of("Flag")
    (task,) = sim.risk_tasks()
    assert receipt.trust_id == f"Task/{task['id']}" and receipt.detail == {
        "flag": f"Flag/{flag['id']}"
    }
    patient = referral(sim)["subject"]
    assert flag["subject"] == patient and task["for"] == patient
    assert task["focus"] == {"reference": f"Flag/{flag['id']}"}
    assert flag["identifier"] == [OURS] and task["identifier"] == [OURS]
    assert (task["status"], task["intent"], task["priority"]) == ("requested", "order", "stat")
    assert task["basedOn"] == [{"reference": f"ServiceRequest/{referral(sim)['id']}"}]

    again = adapter.write(item(sim))
    assert (again.trust_id, again.already_present) == (receipt.trust_id, True)
    assert len(sim.store.all_of("Flag")) == 1 and len(sim.risk_tasks()) == 1
    found = adapter.find(item(sim))
    assert found is not None and found.trust_id == receipt.trust_id


def test_a_lost_answer_is_ambiguous_and_the_retry_finds_both(
    sim: FhirServerSimulator, adapter: FhirTrust
) -> None:
    assert adapter.find(item(sim)) is None
    sim.faults.add(Fault("drop", "POST", "/fhir"))
    with pytest.raises(TransientError) as lost:
        adapter.write(item(sim))
    assert lost.value.ambiguous
    found = adapter.find(item(sim))
    assert found is not None and found.trust_id == f"Task/{sim.risk_tasks()[0]['id']}"


def test_the_task_tells_whether_the_duty_team_has_taken_it_on(
    sim: FhirServerSimulator, adapter: FhirTrust
) -> None:
    receipt = adapter.write(item(sim))
    task_id = receipt.trust_id.split("/")[1]
    assert adapter.acknowledgement(item(sim), receipt.trust_id) is None
    moved = sim.acknowledge_task(task_id, status="accepted")
    seen = adapter.acknowledgement(item(sim), receipt.trust_id)
    assert isinstance(seen, RiskAcknowledgement) and seen.by == "duty.clinician1"
    assert seen.at == datetime.fromisoformat(moved["lastModified"].replace("Z", "+00:00"))
    for status, acknowledged in [
        ("in-progress", True),
        ("completed", True),
        ("received", True),
        ("rejected", False),
        ("cancelled", False),
        ("ready", False),
    ]:
        sim.acknowledge_task(task_id, status=status)
        found = adapter.acknowledgement(item(sim), receipt.trust_id)
        assert (found is not None) is acknowledged, status


def test_a_duty_clinicians_put_with_a_name_as_owner_keeps_no_name(
    sim: FhirServerSimulator, adapter: FhirTrust
) -> None:
    receipt = adapter.write(item(sim))
    task = sim.store.read("Task", receipt.trust_id.split("/")[1])
    assert task is not None
    task.pop("meta")
    task.update(status="in-progress", owner={"display": "Dr Jo Bloggs"}, lastModified="2026-11-10")
    answer = requests.put(
        f"{sim.base_url}/{receipt.trust_id}",
        json=task,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    seen = adapter.acknowledgement(item(sim), receipt.trust_id)
    assert seen is not None and seen.by is None  # no owner reference: nobody named
    stamp = answer.json()["meta"]["lastUpdated"].replace("Z", "+00:00")
    assert seen.at == datetime.fromisoformat(stamp)  # a date-only lastModified: the version's time
    sim.acknowledge_task(task["id"], owner="Practitioner/Dr Jo Bloggs")
    assert adapter.acknowledgement(item(sim), receipt.trust_id).by is None  # type: ignore[union-attr]


def test_another_task_or_a_missing_one_is_an_error(
    sim: FhirServerSimulator, adapter: FhirTrust
) -> None:
    receipt = adapter.write(item(sim))
    with pytest.raises(TerminalError, match="not this risk alert"):
        adapter.acknowledgement(item(sim, "risk-ref-2"), receipt.trust_id)
    with pytest.raises(TerminalError, match="not on the server"):
        adapter.acknowledgement(item(sim), "Task/999999")
    with pytest.raises(TerminalError, match="Task/<id>"):
        adapter.acknowledgement(item(sim), "Flag/1")


def test_the_trust_files_only_coded_safety_flags_and_prioritised_tasks(
    sim: FhirServerSimulator, adapter: FhirTrust
) -> None:
    risky = item(sim)
    flag = dict(risky.payload["flag"], category=[{"text": "admin"}])
    with pytest.raises(TerminalError, match=r"422.*category"):
        adapter.write(
            WriteItem("risk_alert", risky.trust_referral_id, "r3", dict(risky.payload, flag=flag))
        )
    task = {k: v for k, v in risky.payload["task"].items() if k != "priority"}
    with pytest.raises(TerminalError, match=r"422 \(issue business-rule\)"):  # a path we never sent
        adapter.write(
            WriteItem("risk_alert", risky.trust_referral_id, "r4", dict(risky.payload, task=task))
        )
    assert sim.store.all_of("Flag") == []  # a refused transaction leaves nothing behind


def test_a_payload_without_its_two_parts_is_a_mapping_error(
    sim: FhirServerSimulator, adapter: FhirTrust
) -> None:
    risky = item(sim)
    broken = {k: v for k, v in risky.payload.items() if k != "task"}
    with pytest.raises(TerminalError, match="needs task"):
        adapter.write(WriteItem("risk_alert", risky.trust_referral_id, "r5", broken))
