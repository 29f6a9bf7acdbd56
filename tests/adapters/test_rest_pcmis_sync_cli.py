"""A PC-MIS-style trust connected by mapping alone: the real CLI, checked at the simulator.

The connection is the generic ``rest`` adapter plus ``mappings/pcmis.yaml`` (copied into
the work folder, as an integrator would) and a config; nothing PC-MIS-specific is Python.
``ehr-bridge sync --once`` runs through Typer's CliRunner, the synthetic platform answers
between runs, and the end state is read from the simulator's own records.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ehr_bridge.cli.app import app
from ehr_bridge.sim.pcmis import PcmisSimulator
from ehr_bridge.sim.platform import SyntheticPlatform
from support.encryption import security_section

ROOT = Path(__file__).resolve().parents[2]
KEY = "pcmis-e2e-key"
MEASURES = {"phq9": "PHQ9", "gad7": "GAD7", "wsas": "WSAS"}
OUTCOMES = {"2": "CANC_CLIENT", "3": "DNA", "4": "CANC_SERVICE", "5": "ATT", "6": "LATE_SEEN"}
REASONS = {"46": "COMPLETED", "47": "ENDED_PRO", "48": "ENDED_CLIENT"}
runner = CliRunner()

CONFIG = """\
[database]
url = "sqlite:///state/ehr-bridge.db"

[[connection]]
name = "pcmis-trust"
test_connection = true
mapping = "mappings/pcmis.yaml"

[connection.provider_org]
code = "IESO01"

[connection.trust]
adapter = "rest"
base_url = "{api_url}"
mapping = "mappings/pcmis.yaml"
token_file = "secrets/pcmis-key"
page_size = 4

[connection.provider]
adapter = "folder"
path = "provider"

[connection.retry]
base_delay_seconds = 0.01
max_delay_seconds = 0.05
"""


@dataclass
class Run:
    simulator: PcmisSimulator
    config: Path
    platform: SyntheticPlatform
    reports: list[dict[str, Any]]

    def cli(self, *args: str) -> tuple[int, str]:
        outcome = runner.invoke(app, ["--config", str(self.config), *args])
        return outcome.exit_code, outcome.stdout

    def sync_once(self) -> dict[str, Any]:
        code, out = self.cli("sync", "--once", "--json")
        assert code == 0, out
        report: dict[str, Any] = json.loads(out)["pcmis-trust"][0]
        self.reports.append(report)
        return report

    def trust_id(self, service_request_id: str) -> str:
        path = self.platform.referrals_dir / f"{service_request_id}.json"
        resources = [e["resource"] for e in json.loads(path.read_text())["entry"]]
        request = next(r for r in resources if r["resourceType"] == "ServiceRequest")
        return str(request["identifier"][0]["value"])


def _workdir(tmp: Path, api_url: str) -> Path:
    (tmp / "mappings").mkdir()
    shutil.copyfile(ROOT / "mappings" / "pcmis.yaml", tmp / "mappings" / "pcmis.yaml")
    (tmp / "secrets").mkdir()
    (tmp / "secrets" / "pcmis-key").write_text(KEY)
    config = tmp / "ehr-bridge.toml"
    config.write_text(CONFIG.format(api_url=api_url) + security_section(tmp))
    return config


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("pcmis")
    simulator = PcmisSimulator(seed=4, referrals=6, hostile=3, api_key=KEY)
    simulator.start()
    try:
        platform = SyntheticPlatform(tmp / "provider", seed=4)
        run = Run(simulator, _workdir(tmp, simulator.api_url), platform, [])
        for _ in range(10):
            report = run.sync_once()
            run.platform.step()
            quiet = not report["push"]["written"] and not report["collect"]["stored"]
            if quiet and len(run.reports) > 2:
                break
        yield run
    finally:
        simulator.stop()


def _ours(run: Run) -> dict[str, dict[str, Any]]:
    return {
        e["referral"]["ReferralRef"]: e
        for e in run.simulator.export()["referrals"]
        if e["referral"]["Onward"]["ServiceCode"] == "IESO01"
    }


def test_good_referrals_are_delivered_and_hostile_ones_quarantined_by_field(settled: Run) -> None:
    hostile = settled.simulator.state.hostile_fields
    good = set(_ours(settled)) - set(hostile)
    delivered = {settled.trust_id(p.stem) for p in settled.platform.referrals_dir.glob("*.json")}
    assert delivered == good and len(good) == 6
    code, out = settled.cli("quarantine", "list", "--json")
    assert code == 0
    fields = {q["record"]: q["field"] for q in json.loads(out)}
    assert fields == hostile


def test_every_session_artefact_is_at_the_trust_exactly_once(settled: Run) -> None:
    trust = _ours(settled)
    expected = settled.platform.expected_artefacts()
    assert expected
    by_referral: dict[str, list[Any]] = {}
    for artefact in expected:
        by_referral.setdefault(settled.trust_id(artefact.service_request_id), []).append(artefact)
    for trust_id, artefacts in by_referral.items():
        entry = trust[trust_id]
        sessions = [a for a in artefacts if a.kind == "encounter"]
        assert Counter(
            (a["AppointmentDate"], a["StartTime"], a["DurationMins"], a["Outcome"])
            for a in entry["appointment"]
        ) == Counter(
            (a.at.strftime("%d/%m/%Y"), a.at.strftime("%H:%M"), a.duration_minutes,
             OUTCOMES[a.attendance])
            for a in sessions
        )  # fmt: skip
        assert sorted(n["Body"] for n in entry["note"]) == sorted(
            a.text for a in artefacts if a.kind == "note"
        )
        assert Counter((q["Measure"], q["TotalScore"]) for q in entry["questionnaire"]) == Counter(
            (MEASURES[a.measure], a.total) for a in artefacts if a.kind == "score"
        )
        appointments = {a["AppointmentId"] for a in entry["appointment"]}
        assert all(n["AppointmentId"] in appointments for n in entry["note"])
        assert all(q["AppointmentId"] in appointments for q in entry["questionnaire"])
        for kind in ("appointment", "note", "questionnaire", "status_change"):
            references = [i["ExternalRef"] for i in entry[kind]]
            assert len(references) == len(set(references))


def test_status_is_written_back_in_the_systems_own_codes(settled: Run) -> None:
    trust = _ours(settled)
    ends = {
        settled.trust_id(a.service_request_id): a
        for a in settled.platform.expected_artefacts()
        if a.kind == "episode_end"
    }
    assert ends
    for trust_id, end in ends.items():
        entry = trust[trust_id]
        assert [s["Status"] for s in entry["status_change"]] == ["ACC", "DIS"]
        assert entry["referral"]["Status"] == "DIS"
        assert entry["referral"]["Discharge"] == {
            "Date": end.end_date.strftime("%d/%m/%Y"),
            "Reason": REASONS[end.end_code],
        }


def test_a_further_sync_writes_nothing(settled: Run) -> None:
    before = settled.simulator.export()
    for _ in range(2):
        report = settled.sync_once()
        assert report["push"]["written"] == 0
        assert report["collect"]["stored"] == 0
        assert report["deliver"]["delivered"] == 0
    assert settled.simulator.export() == before
    code, out = settled.cli("outbox", "list", "--state", "dead", "--json")
    assert code == 0 and json.loads(out) == []
