"""The FHIR adapters end to end: run_cycle between two FHIR server simulators.

The trust is a FHIR server seeded with referrals (``fhir`` adapter, ``mappings/fhir-r4.yaml``);
the provider's platform keeps its records on a second FHIR server (``fhir-provider``
adapter) and runs the synthetic platform's courses there. Everything is checked at the
peers, not in our tables: what the platform received, and what the trust now holds.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.adapters.fhir import CLIENT_REFERENCE_SYSTEM
from ehr_bridge.config import load_config
from ehr_bridge.sim.fhir_platform import FhirPlatform
from ehr_bridge.sim.fhir_server import FhirServerSimulator
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import Connection, build_connections
from ehr_bridge.sync.cycle import run_cycle
from support.fhir_schema import assert_valid_r4

TOKEN = "e2e-fhir-token"
MAPPING = Path(__file__).resolve().parents[2] / "mappings" / "fhir-r4.yaml"
CONFIG = """\
[database]
url = "sqlite:///state/ehr-bridge.db"

[[connection]]
name = "fhir-trust"
test_connection = true
mapping = "{mapping}"

[connection.provider_org]
code = "IESO01"
display = "Online typed therapy provider"

[connection.trust]
adapter = "fhir"
base_url = "{trust}"
token_file = "secrets/token"
page_size = 4

[connection.provider]
adapter = "fhir-provider"
base_url = "{provider}"
token_file = "secrets/token"
state_file = "state/collect-marker.json"
delivery = "{delivery}"

[connection.retry]
max_attempts = 6
base_delay_seconds = 0.01
max_delay_seconds = 0.05
"""


@dataclass
class FhirBridge:
    trust: FhirServerSimulator
    provider: FhirServerSimulator
    platform: FhirPlatform
    conn: Connection
    store: Store
    workdir: Path

    def cycle(self) -> dict[str, Any]:
        def after(flow: str) -> None:
            if flow == "deliver":
                self.platform.step()

        return run_cycle(self.conn, self.store, between=after)

    def settle(self, max_cycles: int = 6) -> None:
        for _ in range(max_cycles):
            report = self.cycle()
            counts = self.store.outbox_counts(self.conn.name)
            if report["push"]["written"] == 0 and not counts.get("pending"):
                return
        raise AssertionError("the bridge did not settle")

    def trust_id(self, service_request_id: str) -> str:
        request = self.provider.store.read("ServiceRequest", service_request_id)
        assert request is not None
        return str(request["identifier"][0]["value"])

    def at_trust(self, kind: str, trust_id: str) -> list[dict[str, Any]]:
        wanted = f"ServiceRequest/{trust_id}"
        return [r for r in self.trust.store.all_of(kind) if _referral_reference(r) == wanted]


@contextmanager
def fhir_bridge(
    workdir: Path, *, referrals: int, hostile: int = 0, delivery: str = "transaction"
) -> Iterator[FhirBridge]:
    trust = FhirServerSimulator.trust(seed=7, referrals=referrals, hostile=hostile, token=TOKEN)
    provider = FhirServerSimulator(token=TOKEN)
    store: Store | None = None
    with trust, provider:
        (workdir / "secrets").mkdir(parents=True)
        (workdir / "secrets" / "token").write_text(TOKEN)
        config_path = workdir / "ehr-bridge.toml"
        config_path.write_text(
            CONFIG.format(
                mapping=MAPPING,
                trust=trust.base_url,
                provider=provider.base_url,
                delivery=delivery,
            )
        )
        config = load_config(config_path)
        (conn,) = build_connections(config)
        store = Store(config.database_url())
        try:
            platform = FhirPlatform(provider.store, workdir / "platform", seed=7)
            yield FhirBridge(trust, provider, platform, conn, store, workdir)
        finally:
            store.close()


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirBridge]:
    with fhir_bridge(tmp_path_factory.mktemp("fhir-e2e"), referrals=4) as bridge:
        bridge.settle()
        yield bridge


def _ours(sim: FhirServerSimulator) -> set[str]:
    return {
        r["id"]
        for r in sim.store.all_of("ServiceRequest")
        if r["performer"][0]["identifier"]["value"] == "IESO01"
    }


def test_every_referral_reaches_the_platforms_fhir_server(settled: FhirBridge) -> None:
    delivered = settled.provider.store.all_of("ServiceRequest")
    assert sorted(settled.trust_id(r["id"]) for r in delivered) == sorted(_ours(settled.trust))
    for request in delivered:
        patient_id = request["subject"]["reference"].split("/")[1]
        assert settled.provider.store.read("Patient", patient_id) is not None
    assert settled.provider.store.all_of("Bundle"), "the platform stored no sessions"


def test_every_session_artefact_is_at_the_trust_exactly_once(settled: FhirBridge) -> None:
    expected = settled.platform.expected_artefacts()
    by_referral: dict[str, list[Any]] = {}
    for artefact in expected:
        by_referral.setdefault(artefact.service_request_id, []).append(artefact)
    assert len(by_referral) == len(_ours(settled.trust))
    for sr_id, artefacts in by_referral.items():
        trust_id = settled.trust_id(sr_id)
        encounters = settled.at_trust("Encounter", trust_id)
        assert Counter(_contact(e) for e in encounters) == Counter(
            (a.at, a.duration_minutes, a.attendance) for a in artefacts if a.kind == "encounter"
        )
        notes = settled.at_trust("DocumentReference", trust_id)
        assert sorted(_text(n) for n in notes) == sorted(
            a.text for a in artefacts if a.kind == "note"
        )
        scores = settled.at_trust("Observation", trust_id)
        assert Counter(_score(s) for s in scores) == Counter(
            (a.measure, a.total) for a in artefacts if a.kind == "score"
        )
        contact_refs = {f"Encounter/{e['id']}" for e in encounters}
        assert all(n["context"]["encounter"][0]["reference"] in contact_refs for n in notes)
        assert all(s["encounter"]["reference"] in contact_refs for s in scores)


def test_written_resources_carry_one_client_reference_and_the_patient(settled: FhirBridge) -> None:
    references: list[str] = []
    for kind in ("Encounter", "DocumentReference", "Observation", "Task"):
        for resource in settled.trust.store.all_of(kind):
            ours = [i for i in resource["identifier"] if i["system"] == CLIENT_REFERENCE_SYSTEM]
            assert len(ours) == 1
            references.append(ours[0]["value"])
            referral = _referral_reference(resource)
            request = settled.trust.store.read("ServiceRequest", referral.split("/")[1])
            assert request is not None
            assert resource["subject" if kind != "Task" else "for"] == request["subject"]
            assert_valid_r4(resource)
    assert len(references) == len(set(references)) > 0


def test_referral_status_goes_back_as_tasks(settled: FhirBridge) -> None:
    ends = {
        a.service_request_id: a.end_code
        for a in settled.platform.expected_artefacts()
        if a.kind == "episode_end"
    }
    for sr_id, end_code in ends.items():
        tasks = [t for t in settled.at_trust("Task", settled.trust_id(sr_id)) if not _risk_task(t)]
        assert sorted(t["status"] for t in tasks) == ["accepted", "completed"]
        (done,) = [t for t in tasks if t["status"] == "completed"]
        assert done["statusReason"]["coding"][0]["code"] == end_code


def test_a_second_cycle_changes_nothing_at_either_peer(settled: FhirBridge) -> None:
    def snapshot() -> dict[str, int]:
        kinds = ("Encounter", "DocumentReference", "Observation", "Task", "ServiceRequest")
        counts = {k: len(settled.trust.store.all_of(k)) for k in kinds}
        versions = [r["meta"]["versionId"] for r in settled.provider.store.all_of("ServiceRequest")]
        return {**counts, "provider_versions": sum(int(v) for v in versions)}

    before = snapshot()
    report = settled.cycle()
    assert report["pull"]["stored"] == 0
    assert report["deliver"] == {"delivered": 0, "redelivered": 0, "failed": 0}
    assert report["collect"]["stored"] == 0
    assert report["push"]["written"] == 0
    assert snapshot() == before


def test_lost_acknowledgements_make_collect_re_read_but_store_nothing_twice(
    settled: FhirBridge,
) -> None:
    marker = settled.workdir / "state" / "collect-marker.json"
    assert marker.exists()
    marker.unlink()  # as if every acknowledge had been lost in a crash after its store
    report = settled.cycle()
    assert report["collect"]["stored"] == 0
    assert report["collect"]["already_stored"] == len(settled.provider.store.all_of("Bundle"))
    assert report["push"]["written"] == 0
    assert marker.exists()


def test_broken_trust_records_are_quarantined_naming_the_field(tmp_path: Path) -> None:
    with fhir_bridge(tmp_path, referrals=3, hostile=5) as bridge:
        report = run_cycle(bridge.conn, bridge.store, flows=("pull", "deliver"))
        assert report["pull"]["quarantined"] == 5
        rows = {q.record_ref: q for q in bridge.store.quarantine_rows(connection=bridge.conn.name)}
        assert {ref: rows[ref].field for ref in bridge.trust.hostile_fields} == (
            bridge.trust.hostile_fields
        )
        for entry in rows.values():
            assert entry.field in entry.reason
        assert len(bridge.provider.store.all_of("ServiceRequest")) == 3


def test_message_delivery_settles_the_same_way(tmp_path: Path) -> None:
    with fhir_bridge(tmp_path, referrals=1, delivery="message") as bridge:
        bridge.settle()
        assert len(bridge.provider.store.messages) == 1
        assert sorted(
            bridge.trust_id(r["id"]) for r in bridge.provider.store.all_of("ServiceRequest")
        ) == sorted(_ours(bridge.trust))
        assert bridge.trust.store.all_of("Encounter")
        statuses = {t["status"] for t in bridge.trust.store.all_of("Task") if not _risk_task(t)}
        assert statuses == {"accepted", "completed"}


def _risk_task(task: dict[str, Any]) -> bool:
    """A duty-team Task for a risk (its focus is our Flag), not a referral status Task."""
    return "Flag/" in str(task.get("focus", {}).get("reference", ""))


def _referral_reference(resource: dict[str, Any]) -> str:
    """The trust ServiceRequest a written resource belongs to (focus, basedOn or related).

    A status Task's focus is the ServiceRequest; a risk Task's focus is its Flag, and its
    basedOn the ServiceRequest.
    """
    if resource["resourceType"] == "Task" and "Flag/" not in resource["focus"]["reference"]:
        return str(resource["focus"]["reference"])
    if resource["resourceType"] == "DocumentReference":
        return str(resource["context"]["related"][0]["reference"])
    return str(resource["basedOn"][0]["reference"])


def _contact(encounter: dict[str, Any]) -> tuple[datetime, int, str]:
    start = datetime.fromisoformat(encounter["period"]["start"])
    return start, encounter["length"]["value"], encounter["extension"][0]["valueCoding"]["code"]


def _text(document: dict[str, Any]) -> str:
    return base64.b64decode(document["content"][0]["attachment"]["data"]).decode("utf-8")


def _score(observation: dict[str, Any]) -> tuple[str, int]:
    measure = [
        c["code"] for c in observation["code"]["coding"] if c["system"].endswith("outcome-measure")
    ]
    return measure[0], observation["valueQuantity"]["value"]
