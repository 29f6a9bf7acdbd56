"""One harness per adapter: builds it against a real or simulated peer for the contract suite.

Every adapter in the registry must have a harness here (a test enforces it), so a new
adapter cannot skip the contract. Capabilities come from the adapter's spec, declared once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ehr_bridge.adapters.base import JsonDict, ProviderPort, TrustSource, TrustWriter, WriteItem
from ehr_bridge.adapters.registry import ALL_WRITES, specs
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
        capabilities=frozenset({"find_by_reference", "updated_since"}) | ALL_WRITES,
        sample_item=_iaptus_item(referrals[0]["id"]),
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


#: adapter name -> harness; "memory" is the test fake, held to the same contract
TRUST_HARNESSES: dict[str, Callable[[Path], Any]] = {"iaptus": iaptus, "memory": memory}
PROVIDER_HARNESSES: dict[str, Callable[[Path], Any]] = {"folder": folder}
