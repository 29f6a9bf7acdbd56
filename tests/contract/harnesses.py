"""One harness per adapter: builds it against a real or simulated peer for the contract suite.

Every adapter in the registry must have a harness here (a test enforces it), so a new
adapter cannot skip the contract. Capabilities come from the adapter's spec, declared once,
and for an adapter whose capabilities depend on its mapping (``rest``) from what the built
adapter reports within its spec (``registry.capabilities_of``): the rest harness runs the
read-back contract on the PC-MIS mapping's read endpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ehr_bridge.adapters.base import JsonDict, ProviderPort, TrustSource, TrustWriter, WriteItem
from ehr_bridge.adapters.registry import (
    ALL_WRITES,
    SUPPORT_CAPABILITIES,
    capabilities_of,
    specs,
)
from ehr_bridge.config import AdapterConfig
from ehr_bridge.sim import TrustSimulator

TOKEN = "contract-token"


@dataclass
class TrustCase:
    """A trust adapter wired to a peer holding known referrals."""

    source: TrustSource
    writer: TrustWriter | None
    expected_ids: set[str]
    record_id: Callable[[JsonDict], str]
    capabilities: frozenset[str]
    sample_item: Callable[[str, str], WriteItem]  # (kind, client_reference) -> item
    #: when the peer last changed a raw record (aware), for the updated_since contract
    updated_at: Callable[[JsonDict], datetime] = field(
        default=lambda r: datetime.fromisoformat(r["updated_at"].replace("Z", "+00:00"))
    )
    #: the trust's duty clinician "duty.clinician1" acknowledges a written risk alert
    #: (item, trust id); given by every harness whose adapter declares read_acknowledgement
    acknowledge: Callable[[WriteItem, str], None] | None = None
    #: the harness's name (the adapter's, but for the "memory" test fake); set by the suite
    name: str = ""


@dataclass
class ProviderCase:
    """A provider adapter wired to a peer that can see deliveries and submit bundles."""

    provider: ProviderPort
    delivered: Callable[[], dict[str, JsonDict]]  # what the peer has received, by id
    submit: Callable[[str, JsonDict], None]  # the peer writes a session bundle


def _iaptus_item(trust_referral_id: str) -> Callable[[str, str], WriteItem]:
    payloads: dict[str, JsonDict] = {
        "care_contact": {
            "date": "2026-11-10",
            "time": "19:30",
            "duration_minutes": 50,
            "appointment_type": "02",
            "attendance": "5",
            "consultation_mechanism": "10",
        },
        "clinical_note": {
            "authored_at": "2026-11-10T20:25:00Z",
            "title": "Session note",
            "text": "Contract test note.",
        },
        "assessment": {
            "tool_code": "720433000",
            "score": 12,
            "completed_at": "2026-11-10T19:35:00Z",
        },
        "referral_status": {"status": "accepted", "date": "2026-11-03"},
        "risk_alert": {
            "level": "immediate",
            "priority": "stat",
            "reason": "phq9_item9",
            "raised_at": "2026-11-10T19:41:00Z",
            "risk_code": "225444004",
            "summary": "Contract test risk.",
        },
    }

    def make(kind: str, reference: str) -> WriteItem:
        return WriteItem(kind, trust_referral_id, reference, dict(payloads[kind]))

    return make


@contextmanager
def iaptus(tmp_path: Path) -> Iterator[TrustCase]:
    from ehr_bridge.adapters.registry import create_adapter

    simulator = TrustSimulator(seed=21, referrals=7, token=TOKEN)
    base = simulator.start()
    try:
        (tmp_path / "token").write_text(TOKEN)
        config = AdapterConfig(
            adapter="iaptus", base_url=f"{base}/api/v1", token_file="token", page_size=3
        )
        adapter = create_adapter(
            "trust", config, base_dir=tmp_path, key="trust", provider_code="IESO01"
        )
        referrals = [e["referral"] for e in simulator.export()["referrals"]]
        ours = {r["id"] for r in referrals if r["referred_on_to"] == "IESO01"}
        yield TrustCase(
            source=adapter,
            writer=adapter,
            expected_ids=ours,
            record_id=lambda r: str(r["id"]),
            capabilities=specs()["iaptus"].capabilities,
            sample_item=_iaptus_item(sorted(ours)[0]),
            acknowledge=lambda item, trust_id: _ignore(
                simulator.state.acknowledge_risk_alert(
                    item.trust_referral_id, trust_id, {"by": "duty.clinician1"}
                )
            ),
        )
    finally:
        simulator.stop()


@contextmanager
def memory(tmp_path: Path) -> Iterator[TrustCase]:
    from ehr_bridge.adapters.memory import MemoryTrust

    referrals = [
        e["referral"]
        for e in TrustSimulator(seed=22, referrals=7).export()["referrals"]
        if e["referral"]["referred_on_to"] == "IESO01"
    ]
    trust = MemoryTrust(referrals, page_size=3)
    yield TrustCase(
        source=trust,
        writer=trust,
        expected_ids={r["id"] for r in referrals},
        record_id=lambda r: str(r["id"]),
        capabilities=frozenset({"find_by_reference", "updated_since", "read_acknowledgement"})
        | ALL_WRITES
        | SUPPORT_CAPABILITIES,
        sample_item=_iaptus_item(referrals[0]["id"]),
        acknowledge=lambda item, trust_id: _ignore(trust.acknowledge(trust_id)),
    )


@contextmanager
def folder(tmp_path: Path) -> Iterator[ProviderCase]:
    import json

    from ehr_bridge.adapters.registry import create_adapter

    root = tmp_path / "shared"
    config = AdapterConfig(adapter="folder", path=str(root))
    provider = create_adapter(
        "provider", config, base_dir=tmp_path, key="provider", provider_code="X"
    )

    def delivered() -> dict[str, JsonDict]:
        return {p.stem: json.loads(p.read_text()) for p in (root / "referrals").glob("*.json")}

    def submit(name: str, bundle: JsonDict) -> None:
        (root / "sessions" / f"{name}.json").write_text(json.dumps(bundle))

    yield ProviderCase(provider=provider, delivered=delivered, submit=submit)


def _pcmis_item(trust_referral_id: str) -> Callable[[str, str], WriteItem]:
    payloads: dict[str, JsonDict] = {
        "care_contact": {
            "AppointmentDate": "10/11/2026",
            "StartTime": "19:30",
            "DurationMins": 50,
            "AppointmentType": "TREAT",
            "Outcome": "ATT",
            "Medium": "IM",
        },
        "clinical_note": {"NoteDate": "10/11/2026", "NoteTime": "20:25", "Body": "Contract note."},
        "assessment": {"Measure": "PHQ9", "TotalScore": 12, "DateCompleted": "10/11/2026"},
        "referral_status": {"Status": "ACC", "EffectiveDate": "03/11/2026"},
        "risk_alert": {
            "Severity": "EMERGENCY",
            "Priority": "P1",
            "Source": "PHQ9_Q9",
            "RaisedDate": "10/11/2026",
            "RaisedTime": "19:41",
            "RiskCode": "225444004",
        },
    }

    def make(kind: str, reference: str) -> WriteItem:
        payload = dict(payloads[kind], ExternalRef=reference)
        return WriteItem(kind, trust_referral_id, reference, payload)

    return make


@contextmanager
def rest(tmp_path: Path) -> Iterator[TrustCase]:
    """The generic REST adapter against the PC-MIS-style simulator, through pcmis.yaml."""
    from ehr_bridge.adapters.registry import create_adapter
    from ehr_bridge.sim.pcmis import PcmisSimulator

    simulator = PcmisSimulator(seed=23, referrals=7, api_key=TOKEN)
    simulator.start()
    try:
        (tmp_path / "token").write_text(TOKEN)
        mapping = Path(__file__).resolve().parents[2] / "mappings" / "pcmis.yaml"
        config = AdapterConfig(
            adapter="rest",
            base_url=simulator.api_url,
            mapping=str(mapping),
            token_file="token",
            page_size=3,
        )
        adapter = create_adapter(
            "trust", config, base_dir=tmp_path, key="trust", provider_code="IESO01"
        )
        referrals = [e["referral"] for e in simulator.export()["referrals"]]
        ours = {r["ReferralRef"] for r in referrals if r["Onward"]["ServiceCode"] == "IESO01"}
        yield TrustCase(
            source=adapter,
            writer=adapter,
            expected_ids=ours,
            record_id=lambda r: str(r["ReferralRef"]),
            capabilities=capabilities_of(specs()["rest"], adapter),
            sample_item=_pcmis_item(sorted(ours)[0]),
            updated_at=lambda r: datetime.fromisoformat(r["LastModified"]),
        )
    finally:
        simulator.stop()


_FHIR_GOLDEN = {
    "care_contact": "care-contact-01-bst",
    "clinical_note": "clinical-note-01",
    "assessment": "assessment-01-phq9",
    "referral_status": "referral-status-02-accepted",
    "risk_alert": "risk-alert-01-immediate",
}


def _fhir_item(trust_referral_id: str) -> Callable[[str, str], WriteItem]:
    """Items as push builds them: golden FHIR artefacts through mappings/fhir-r4.yaml."""
    import json

    from ehr_bridge.mapping import load_mapping

    mappings = Path(__file__).resolve().parents[2] / "mappings"
    mapping = load_mapping(mappings / "fhir-r4.yaml")

    def make(kind: str, reference: str) -> WriteItem:
        path = mappings / "fhir-r4.golden" / f"{_FHIR_GOLDEN[kind]}.input.json"
        source = json.loads(path.read_text("utf-8"))
        context = dict(
            source["context"],
            client_reference=reference,
            trust_referral_id=trust_referral_id,
            care_contact_id=None,
        )
        payload = mapping.outbound(kind, source["resource"], context)
        return WriteItem(kind, trust_referral_id, reference, payload)

    return make


@contextmanager
def fhir(tmp_path: Path) -> Iterator[TrustCase]:
    """The FHIR trust adapter against the FHIR server simulator seeded as a trust."""
    from ehr_bridge.adapters.registry import create_adapter
    from ehr_bridge.sim.fhir_server import FhirServerSimulator

    with FhirServerSimulator.trust(seed=23, referrals=7, token=TOKEN) as simulator:
        (tmp_path / "token").write_text(TOKEN)
        config = AdapterConfig(
            adapter="fhir", base_url=simulator.base_url, token_file="token", page_size=3
        )
        adapter = create_adapter(
            "trust", config, base_dir=tmp_path, key="trust", provider_code="IESO01"
        )
        ours = {
            r["id"]
            for r in simulator.store.all_of("ServiceRequest")
            if r["performer"][0]["identifier"]["value"] == "IESO01"
        }
        yield TrustCase(
            source=adapter,
            writer=adapter,
            expected_ids=ours,
            record_id=lambda r: str(r["id"]),
            capabilities=specs()["fhir"].capabilities,
            sample_item=_fhir_item(sorted(ours)[0]),
            acknowledge=lambda item, trust_id: _ignore(
                simulator.acknowledge_task(trust_id.split("/")[1])
            ),
            updated_at=lambda r: datetime.fromisoformat(
                r["service_request"]["meta"]["lastUpdated"].replace("Z", "+00:00")
            ),
        )


@contextmanager
def fhir_provider(tmp_path: Path) -> Iterator[ProviderCase]:
    """The FHIR provider adapter against an empty FHIR server simulator (the platform's)."""
    from ehr_bridge.adapters.registry import create_adapter
    from ehr_bridge.sim.fhir_server import FhirServerSimulator

    with FhirServerSimulator(token=TOKEN) as simulator:
        (tmp_path / "token").write_text(TOKEN)
        config = AdapterConfig(
            adapter="fhir-provider",
            base_url=simulator.base_url,
            token_file="token",
            state_file="state/collect-marker.json",
            page_size=2,
        )
        provider = create_adapter(
            "provider", config, base_dir=tmp_path, key="provider", provider_code="X"
        )
        store = simulator.store

        def delivered() -> dict[str, JsonDict]:
            found: dict[str, JsonDict] = {}
            for request in store.all_of("ServiceRequest"):
                patient = store.read("Patient", request["subject"]["reference"].split("/")[-1])
                entry = [{"resource": r} for r in (patient, request) if r is not None]
                found[request["id"]] = {
                    "resourceType": "Bundle",
                    "type": "collection",
                    "entry": entry,
                }
            return found

        def submit(name: str, bundle: JsonDict) -> None:
            store.put({**bundle, "id": bundle.get("id", name)})

        yield ProviderCase(provider=provider, delivered=delivered, submit=submit)


@contextmanager
def hl7v2(tmp_path: Path) -> Iterator[TrustCase]:
    """REF^I12 files in a drop folder; ORU/MDM to hl7apy's MLLP server (closes after each ACK)."""
    from ehr_bridge.adapters.hl7v2.peer import RecordingPeer, uk_referral
    from ehr_bridge.adapters.registry import create_adapter

    referrals = [
        e["referral"]
        for e in TrustSimulator(seed=24, referrals=7).export()["referrals"]
        if e["referral"]["referred_on_to"] == "IESO01"
    ]
    (tmp_path / "in").mkdir()
    for referral in referrals:
        (tmp_path / "in" / f"{referral['id']}.hl7").write_text(uk_referral(referral))
    peer = RecordingPeer().start()
    try:
        send = {"host": "127.0.0.1", "port": peer.port, "timeout_seconds": 5}
        config = AdapterConfig(
            adapter="hl7v2", drop_folder="in", settle_seconds=0, page_size=3, send=send
        )
        adapter = create_adapter(
            "trust", config, base_dir=tmp_path, key="trust", provider_code="IESO01"
        )
        yield TrustCase(
            source=adapter,
            writer=adapter,
            expected_ids={r["id"] for r in referrals},
            record_id=lambda r: str(r["RF1"][0]["6"][0]["1"]),
            capabilities=specs()["hl7v2"].capabilities,
            sample_item=_hl7v2_item(referrals[0]["id"]),
        )
    finally:
        peer.stop()


def _hl7v2_item(trust_referral_id: str) -> Callable[[str, str], WriteItem]:
    payloads: dict[str, JsonDict] = {
        "assessment": {"tool_code": "720433000", "score": 12, "completed_at": "2026-11-10T19:35Z"},
        "clinical_note": {"authored_at": "2026-11-10T20:25:00Z", "text": "Contract test note."},
        "risk_alert": {
            "risk_code": "225444004",
            "abnormal_flag": "AA",
            "priority": "S",
            "raised_at": "2026-11-10T19:41:00Z",
            "summary": "Contract test risk.",
        },
    }

    def make(kind: str, reference: str) -> WriteItem:
        payload = dict(payloads[kind], client_reference=reference, referral_id=trust_referral_id)
        return WriteItem(kind, trust_referral_id, reference, payload)

    return make


def _ignore(_: object) -> None:
    """Drop what a simulator's trust-side action answers (a harness's callback returns None)."""


#: adapter name -> harness; "memory" is the test fake, held to the same contract
TRUST_HARNESSES: dict[str, Callable[[Path], Any]] = {
    "fhir": fhir,
    "hl7v2": hl7v2,
    "iaptus": iaptus,
    "memory": memory,
    "rest": rest,
}
PROVIDER_HARNESSES: dict[str, Callable[[Path], Any]] = {
    "fhir-provider": fhir_provider,
    "folder": folder,
}
