"""``risk_alert`` as a write kind: declared by adapters, queued only where a mapping builds it."""

from __future__ import annotations

from pathlib import Path

import yaml

from ehr_bridge.adapters.folder import FolderProvider
from ehr_bridge.adapters.memory import MemoryTrust
from ehr_bridge.adapters.registry import CAPABILITIES, WRITE_KINDS, specs
from ehr_bridge.domain.referral import ProviderRef
from ehr_bridge.mapping import OUTBOUND_KINDS, load_mapping
from ehr_bridge.mapping.api import WritesSpec
from ehr_bridge.mapping.schema import RISK_LEVELS, RISK_PRIORITIES, RISK_REASONS
from ehr_bridge.sim import records as sim
from ehr_bridge.sync.connection import Connection

ROOT = Path(__file__).resolve().parents[2]


def test_risk_alert_is_a_write_kind_everywhere_kinds_are_listed() -> None:
    assert "risk_alert" in WRITE_KINDS and "risk_alert" in OUTBOUND_KINDS
    assert "risk_alert" in WritesSpec.model_fields
    assert {"write:risk_alert", "read_acknowledgement"} <= CAPABILITIES
    takers = {n for n, s in specs().items() if "write:risk_alert" in s.capabilities}
    assert takers == {"fhir", "hl7v2", "iaptus", "rest"}


def test_the_context_codes_are_the_ones_the_simulated_trust_files() -> None:
    assert set(RISK_LEVELS) == sim.RISK_LEVELS and set(RISK_REASONS) == sim.RISK_REASONS
    assert {sim.RISK_PRIORITY_OF_LEVEL[level] for level in RISK_LEVELS} == set(RISK_PRIORITIES)
    assert [sim.RISK_PRIORITY_OF_LEVEL[level] for level in RISK_LEVELS] == list(RISK_PRIORITIES)


def connection(tmp_path: Path, mapping_file: Path) -> Connection:
    return Connection(
        name="risk",
        mapping=load_mapping(mapping_file),
        source=MemoryTrust(),
        writer=MemoryTrust(),
        provider=FolderProvider(tmp_path / "provider"),
        provider_ref=ProviderRef(code="IESO01", display="Provider"),
    )


def test_a_connection_queues_risk_alerts_only_when_its_mapping_builds_them(tmp_path: Path) -> None:
    with_risks = connection(tmp_path, ROOT / "mappings" / "iaptus.yaml")
    assert with_risks.writes("risk_alert") and with_risks.writes("care_contact")
    raw = yaml.safe_load((ROOT / "mappings" / "iaptus.yaml").read_text("utf-8"))
    del raw["outbound"]["risk_alert"]
    older = tmp_path / "older.yaml"
    older.write_text(yaml.safe_dump(raw, sort_keys=False), "utf-8")
    without = connection(tmp_path, older)
    assert not without.writes("risk_alert") and without.writes("care_contact")
    no_capability = connection(tmp_path, ROOT / "mappings" / "iaptus.yaml")
    no_capability.capabilities = frozenset({"write:care_contact"})
    assert not no_capability.writes("risk_alert")
