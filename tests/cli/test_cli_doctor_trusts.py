"""`ehr-bridge doctor` reaches every kind of trust the harness runs, and a FHIR provider.

Each kind is the project's own simulator on loopback behind its real adapter (IAPTUS-style,
PC-MIS behind ``rest``, an HL7 v2 interface engine over MLLP, a FHIR server): doctor makes
its one cheap read (a TCP connect for HL7 v2) and passes, and fails naming the key once
the other side is gone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ehr_bridge.cli.app import app
from ehr_bridge.sim.fhir_server import FhirServerSimulator
from support.encryption import security_section
from support.trusts import KINDS, TOKEN, TrustKind, trust_harness

runner = CliRunner()
UNIT = Path(__file__).resolve().parents[2] / "config" / "ehr-bridge.service"
FHIR_PROVIDER = """\
[database]
url = "sqlite:///state/ehr-bridge.db"
{security}
[[connection]]
name = "fhir-both"
test_connection = true
mapping = "{mapping}"

[connection.provider_org]
code = "IESO01"

[connection.trust]
adapter = "fhir"
base_url = "{trust}"
token_file = "secrets/token"

[connection.provider]
adapter = "fhir-provider"
base_url = "{provider}"
token_file = "secrets/provider-token"
state_file = "state/collect-marker.json"
"""


def _doctor(config: Path, *args: str) -> tuple[int, list[dict[str, str]]]:
    result = runner.invoke(
        app, ["--config", str(config), "doctor", "--unit", str(UNIT), "--json", *args]
    )
    assert TOKEN not in result.stdout + result.stderr
    return result.exit_code, json.loads(result.stdout)


def _of(checks: list[dict[str, str]], check: str) -> list[dict[str, str]]:
    return [c for c in checks if c["connection"] != "-" and c["check"] == check]


@pytest.mark.parametrize("kind", KINDS)
def test_doctor_reaches_every_kind_of_trust(kind: TrustKind, tmp_path: Path) -> None:
    with trust_harness(kind, tmp_path / kind) as harness:
        config = harness.workdir / "ehr-bridge.toml"
        code, checks = _doctor(config)
        assert code == 0, [c for c in checks if c["status"] == "FAIL"]
        trust = _of(checks, "trust")  # HL7 v2: its folders too
        assert {c["status"] for c in trust} == {"PASS"}, trust
        reached = ("answered an authenticated", "accepts connections")
        assert any(said in c["message"] for c in trust for said in reached), trust
        assert _of(checks, "config")[0]["status"] == "PASS"
    code, checks = _doctor(config, "--timeout", "1")  # the simulator is gone now
    assert code == 1
    (trust,) = [c for c in _of(checks, "trust") if c["status"] == "FAIL"]
    assert "cannot connect to" in trust["message"] and "127.0.0.1:" in trust["message"]
    assert "connection[0].trust." in trust["fix"]


def test_doctor_reads_a_fhir_provider_and_names_its_token_when_refused(tmp_path: Path) -> None:
    mapping = Path(__file__).resolve().parents[2] / "mappings" / "fhir-r4.yaml"
    trust = FhirServerSimulator.trust(seed=2, referrals=2, token=TOKEN)
    provider = FhirServerSimulator(token="provider-sim-token")
    with trust, provider:
        (tmp_path / "secrets").mkdir(mode=0o700)
        for name, value in (("token", TOKEN), ("provider-token", "provider-sim-token")):
            (tmp_path / "secrets" / name).write_text(value)
            (tmp_path / "secrets" / name).chmod(0o600)
        config = tmp_path / "ehr-bridge.toml"
        config.write_text(
            FHIR_PROVIDER.format(
                security=security_section(tmp_path),
                mapping=mapping,
                trust=trust.base_url,
                provider=provider.base_url,
            )
        )
        (tmp_path / "state").mkdir(mode=0o700)
        code, checks = _doctor(config)
        assert code == 0, [c for c in checks if c["status"] == "FAIL"]
        assert [c["status"] for c in _of(checks, "trust")] == ["PASS"]
        readable = [c for c in _of(checks, "provider") if "Bundle search" in c["message"]]
        assert [c["status"] for c in readable] == ["PASS"]
        (tmp_path / "secrets" / "provider-token").write_text("a-stale-provider-token")
        code, checks = _doctor(config)
    assert code == 1
    (refused,) = [c for c in _of(checks, "provider") if c["status"] == "FAIL"]
    assert "refused our credentials" in refused["message"]
    assert "connection[0].provider.token_file" in refused["fix"]
    assert "a-stale-provider-token" not in json.dumps(checks)
