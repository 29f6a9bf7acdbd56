"""``check_mapping``: code maps read against what each side really uses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ehr_bridge.mapping import load_mapping
from ehr_bridge.mapping.check import Finding, check_mapping

ROOT = Path(__file__).resolve().parents[2]


def findings(tmp_path: Path, name: str, mutate: Callable[[dict[str, Any]], None]) -> list[Finding]:
    raw = yaml.safe_load((ROOT / "mappings" / name).read_text("utf-8"))
    mutate(raw)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False), "utf-8")
    return check_mapping(load_mapping(path))


def test_inbound_code_map_values_must_fit_the_target(tmp_path: Path) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        raw["code_maps"]["sex"]["F"] = "woman"
        raw["code_maps"]["end_code_in"]["COMPLETED"] = "45"

    found = findings(tmp_path, "pcmis.yaml", mutate)
    assert [(f.level, f.key.split(":")[-1]) for f in found] == [
        ("error", "inbound.referral.end_code"),
        ("error", "inbound.referral.patient.gender"),
    ]
    assert "'woman'" in found[1].message and "FHIR administrative gender" in found[1].message


def test_a_constant_is_checked_too(tmp_path: Path) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        raw["inbound"]["referral"]["status"] = {"const": "open"}
        del raw["code_maps"]["referral_status"]

    found = findings(tmp_path, "pcmis.yaml", mutate)
    assert [f.key.split(":")[-1] for f in found] == ["inbound.referral.status"]


def test_outbound_code_maps_must_cover_every_code_we_send(tmp_path: Path) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        del raw["code_maps"]["attendance"]["7"]
        del raw["code_maps"]["medium"]["98"]
        del raw["code_maps"]["end_code_out"]["49"]
        del raw["code_maps"]["status_out"]["received"]

    found = findings(tmp_path, "pcmis.yaml", mutate)
    by_rule = {f.key.split(":")[-1]: f.message for f in found}
    assert set(by_rule) == {
        "outbound.care_contact.Outcome",
        "outbound.care_contact.Medium",
        "outbound.referral_status.DischargeReason",
        "outbound.referral_status.Status",
    }
    assert "our code(s) 7;" in by_rule["outbound.care_contact.Outcome"]
    assert "received" in by_rule["outbound.referral_status.Status"]


def test_later_transforms_are_applied_before_the_lookup(tmp_path: Path) -> None:
    """Attendance '5' is sent as '05' after zero_pad, so a map keyed '02'..'07' is complete."""

    def mutate(raw: dict[str, Any]) -> None:
        raw["code_maps"]["attendance"] = {f"0{n}": str(n) for n in range(2, 8)}
        rule = raw["outbound"]["care_contact"]["attendance"]
        rule["transform"] = [{"extension_value": {"url": "attendance"}}, {"zero_pad": {"width": 2}}]
        rule["code_map"] = "attendance"

    assert findings(tmp_path, "iaptus.yaml", mutate) == []

    def unpadded(raw: dict[str, Any]) -> None:
        mutate(raw)
        raw["outbound"]["care_contact"]["attendance"]["transform"] = {
            "extension_value": {"url": "attendance"}
        }

    assert [f.level for f in findings(tmp_path, "iaptus.yaml", unpadded)] == ["error"]


def test_on_unmapped_keep_needs_no_full_map(tmp_path: Path) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        del raw["code_maps"]["medium"]["98"]
        raw["outbound"]["care_contact"]["Medium"]["on_unmapped"] = "keep"

    assert findings(tmp_path, "pcmis.yaml", mutate) == []


def test_unused_code_maps_and_missing_writes_are_warnings(tmp_path: Path) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        raw["code_maps"]["spare"] = {"a": "b"}
        del raw["api"]["writes"]["assessment"]

    found = findings(tmp_path, "pcmis.yaml", mutate)
    assert [(f.level, f.key.split(":")[-1]) for f in found] == [
        ("warning", "api.writes.assessment"),
        ("warning", "code_maps.spare"),
    ]


def test_a_rest_mapping_that_cannot_be_read_back_is_told_so(tmp_path: Path) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        del raw["api"]["referral"]
        for write in raw["api"]["writes"].values():
            write.pop("list")
            write.pop("update", None)

    found = findings(tmp_path, "pcmis.yaml", mutate)
    assert [(f.level, f.key.split(":")[-1]) for f in found] == [
        ("warning", "api.referral"),
        ("warning", "api.writes"),
    ]
    assert "quarantine retry" in found[0].message and "reconcile" in found[1].message


def test_risk_alert_code_maps_must_cover_every_level_priority_and_reason(tmp_path: Path) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        del raw["code_maps"]["risk_severity"]["immediate"]
        del raw["code_maps"]["risk_priority"]["stat"]
        del raw["code_maps"]["risk_source"]["detected_issue"]

    found = findings(tmp_path, "pcmis.yaml", mutate)
    by_rule = {f.key.split(":")[-1]: f.message for f in found if f.level == "error"}
    assert set(by_rule) == {
        "outbound.risk_alert.Severity",
        "outbound.risk_alert.Priority",
        "outbound.risk_alert.Source",
    }
    assert "immediate" in by_rule["outbound.risk_alert.Severity"]
    assert "stat" in by_rule["outbound.risk_alert.Priority"]


def test_a_rest_mapping_without_risk_alerts_is_only_told_so(tmp_path: Path) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        del raw["api"]["writes"]["risk_alert"]
        del raw["outbound"]["risk_alert"]
        for name in ("risk_severity", "risk_priority", "risk_source"):
            del raw["code_maps"][name]

    found = findings(tmp_path, "pcmis.yaml", mutate)
    assert [(f.level, f.key.split(":")[-1]) for f in found] == [
        ("warning", "api.writes.risk_alert")
    ]
    assert "never queued" in found[0].message
