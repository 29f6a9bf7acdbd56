"""A whole bridge run against the in-memory trust, and the patient values it carried."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ehr_bridge.adapters.folder import FolderProvider
from ehr_bridge.adapters.memory import MemoryTrust
from ehr_bridge.demo import bundled_mapping
from ehr_bridge.domain.referral import ProviderRef
from ehr_bridge.mapping import load_mapping
from ehr_bridge.retry import RetryPolicy
from ehr_bridge.security import PayloadCipher
from ehr_bridge.sim import TrustSimulator
from ehr_bridge.sim.platform import SyntheticPlatform
from ehr_bridge.store import Store
from ehr_bridge.sync.collect import collect
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.deliver import deliver
from ehr_bridge.sync.pull import pull
from ehr_bridge.sync.push import push

PATIENT_KEYS = ("nhs_number", "family_name", "given_name", "email", "phone", "postcode")


@dataclass
class Flow:
    conn: Connection
    store: Store
    trust: MemoryTrust
    platform: SyntheticPlatform
    url: str

    def patient_values(self) -> list[str]:
        """NHS numbers, names and contact details of every record the trust sent."""
        values = []
        for record in self.trust.referrals:
            patient = record.get("patient")
            if isinstance(patient, dict):
                values += [str(patient[k]) for k in PATIENT_KEYS if len(str(patient.get(k))) > 4]
        return values

    def note_texts(self) -> list[str]:
        return [a.text for a in self.platform.expected_artefacts() if a.kind == "note" and a.text]


def referral_records(seed: int, count: int, hostile: int = 0) -> list[dict[str, Any]]:
    export = TrustSimulator(seed=seed, referrals=count, hostile=hostile).export()
    return [
        e["referral"] for e in export["referrals"] if e["referral"]["referred_on_to"] == "IESO01"
    ]


def run_flow(
    root: Path, cipher: PayloadCipher | None, *, hostile: int = 2, rounds: int = 6
) -> Flow:
    """Pull, deliver, sessions, collect and push until the platform has nothing new."""
    trust = MemoryTrust(referral_records(21, 4, hostile))
    conn = Connection(
        name="sec",
        mapping=load_mapping(bundled_mapping("iaptus.yaml")),
        source=trust,
        writer=trust,
        provider=FolderProvider(root / "provider"),
        provider_ref=ProviderRef(code="IESO01", display="Provider"),
        test_connection=True,  # synthetic patients: test-range NHS numbers
        retry=RetryPolicy(max_attempts=5, base_delay=0, max_delay=0),
    )
    url = f"sqlite:///{root / 'state.db'}"
    store = Store(url, cipher=cipher)
    platform = SyntheticPlatform(root / "provider", seed=21)
    for _ in range(rounds):
        pull(conn, store)
        deliver(conn, store)
        platform.step()
        collect(conn, store)
        push(conn, store)
    return Flow(conn, store, trust, platform, url)
