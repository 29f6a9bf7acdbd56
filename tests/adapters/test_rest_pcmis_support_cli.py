"""Acceptance: the PC-MIS trial of docs/adding-an-ehr.md, through its support section.

The work folder is set up as the guide does it (its config block, with the simulator's
port; `pcmis.yaml` copied; the key in `secrets/pcmis-key`; `keys generate`), then `sync`,
the synthetic platform, `sync`. Someone at the trust deletes a note, edits a score and
fixes a malformed referral through the simulator's `/_sim/` routes (the guide's curl
calls), and support staff put each right with the real CLI alone: `reconcile`,
`reconcile --repair [--force]`, `sync --once --flow push`, `quarantine retry`. The end state
is read from the simulator's own records; the commands print no patient data.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from typer.testing import CliRunner, Result

from ehr_bridge.cli.app import app
from ehr_bridge.sim.pcmis import KEY_HEADER, PcmisSimulator
from ehr_bridge.sim.platform import SyntheticPlatform

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "adding-an-ehr.md").read_text(encoding="utf-8")
DOC_API_URL = "http://127.0.0.1:8766/pcmis/api/v2"
KEY = "trial-key"  # the guide's
runner = CliRunner()


@dataclass
class Trial:
    simulator: PcmisSimulator
    config: Path
    outputs: list[str] = field(default_factory=list)

    def __call__(self, *args: str) -> Result:
        try:
            result = runner.invoke(app, ["--config", str(self.config), *args])
        finally:
            _drop_cli_log_handlers()
        self.outputs.append(result.stdout)
        return result

    def ok(self, *args: str) -> Result:
        result = self(*args)
        assert result.exit_code == 0, (args, result.stdout)
        return result

    def json(self, *args: str) -> Any:
        result = self(*args, "--json")
        assert result.exit_code in (0, 1), (args, result.stdout)
        return json.loads(result.stdout)

    def on_screen(self, method: str, path: str, body: Any = None) -> Any:
        """What someone at the trust does on screen: the guide's curl to ``/_sim/``."""
        url = f"{self.simulator.base_url}/_sim/referrals/{path}"
        answer = requests.request(method, url, json=body, headers={KEY_HEADER: KEY}, timeout=5)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def trust(self, reference: str) -> dict[str, Any]:
        (entry,) = [
            e
            for e in self.simulator.export()["referrals"]
            if e["referral"]["ReferralRef"] == reference
        ]
        return entry


def _drop_cli_log_handlers() -> None:
    """`sync` logs to the runner's stderr, which closes after the call: detach it again."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_ehr_bridge", False):
            root.removeHandler(handler)


def _guide_config(api_url: str) -> str:
    (config,) = re.findall(r"```toml\n(.*?)```", DOC, flags=re.DOTALL)
    assert DOC_API_URL in config
    return config.replace(DOC_API_URL, api_url)


def _private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, 0o600)


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trial]:
    work = tmp_path_factory.mktemp("pcmis-trial")
    simulator = PcmisSimulator(seed=7, referrals=4, hostile=2, api_key=KEY)
    simulator.start()
    try:
        shutil.copyfile(ROOT / "mappings" / "pcmis.yaml", work / "pcmis.yaml")
        _private(work / "secrets" / "pcmis-key", KEY)
        (work / "ehr-bridge.toml").write_text(_guide_config(simulator.api_url))
        trial = Trial(simulator, work / "ehr-bridge.toml")
        trial.ok("keys", "generate")
        trial.ok("sync", "--once")
        SyntheticPlatform(work / "provider", seed=7).step()
        trial.ok("sync")
        yield trial
    finally:
        simulator.stop()


def _findings(report: list[dict[str, Any]]) -> list[tuple[str, str, str, list[str]]]:
    return sorted(
        (r["trust_referral_id"], f["kind"], f["state"], f["fields"])
        for r in report
        for f in r["findings"]
    )


def _with_notes_and_scores(trial: Trial) -> str:
    entries = [e for e in trial.simulator.export()["referrals"] if e["note"] and e["questionnaire"]]
    assert entries, "the platform wrote no session with a note and a score"
    return str(entries[0]["referral"]["ReferralRef"])


def test_1_everything_written_reads_back_in_sync(trial: Trial) -> None:
    result = trial("reconcile")
    assert result.exit_code == 0, result.stdout
    assert "0 with drift" in result.stdout
    report = trial.json("reconcile")
    assert report and all(r["verdict"] == "in sync" and r["in_sync"] > 0 for r in report)
    assert len(report) == 4  # every referral delivered, each with write-backs


def test_2_a_deleted_note_and_an_edited_score_are_found_and_put_right(trial: Trial) -> None:
    ref = _with_notes_and_scores(trial)
    note = trial.trust(ref)["note"][0]
    score = trial.trust(ref)["questionnaire"][0]
    trial.on_screen("DELETE", f"{ref}/notes/{note['NoteId']}")
    edited = (score["TotalScore"] + 3) % 20
    trial.on_screen(
        "POST", f"{ref}/questionnaires/{score['QuestionnaireId']}/edit", {"TotalScore": edited}
    )

    dry = trial("reconcile")
    assert dry.exit_code == 1 and "dry run: nothing changed" in dry.stdout
    report = trial.json("reconcile")
    assert _findings(report) == [
        (ref, "assessment", "changed", ["TotalScore"]),
        (ref, "clinical_note", "missing", []),
    ]
    (missing,) = [f for r in report for f in r["findings"] if f["state"] == "missing"]
    assert missing["trust_id"] == str(note["NoteId"])

    why = "trial: note deleted in error"
    assert trial("reconcile", "--repair", "--reason", why).exit_code == 1  # the edit stays
    assert trial.trust(ref)["questionnaire"][0]["TotalScore"] == edited
    assert trial("reconcile", "--repair", "--force", "--reason", why).exit_code == 0
    trial.ok("sync", "--once", "--flow", "push")
    assert trial("reconcile").exit_code == 0

    entry = trial.trust(ref)
    (again,) = [n for n in entry["note"] if n["ExternalRef"] == note["ExternalRef"]]
    assert again["Body"] == note["Body"] and again["NoteId"] != note["NoteId"]
    (restored,) = [
        q for q in entry["questionnaire"] if q["QuestionnaireId"] == score["QuestionnaireId"]
    ]
    assert restored == score
    actions = [a["action"] for a in trial.json("audit", "list", "--action", "reconcile")]
    assert {"reconcile.run", "reconcile.requeue", "reconcile.overwrite"} <= set(actions)
    (overwrite,) = trial.json("audit", "list", "--action", "reconcile.overwrite")
    assert overwrite["outcome"] == "updated" and overwrite["detail"]["fields"] == ["TotalScore"]


def test_3_a_malformed_referral_fixed_at_the_trust_is_retried(trial: Trial) -> None:
    hostile = trial.simulator.state.hostile_fields
    entries = trial.json("quarantine", "list")
    assert {e["record"]: e["field"] for e in entries} == hostile
    entry = entries[0]
    record = entry["record"]
    why = "fixed at the trust"
    not_yet = trial("quarantine", "retry", str(entry["id"]), "--reason", why)
    assert not_yet.exit_code == 1 and "has not changed" in not_yet.stdout

    trial.on_screen("POST", f"{record}/fix")
    fixed = trial("quarantine", "retry", str(entry["id"]), "--reason", why)
    assert fixed.exit_code == 0 and "now passes" in fixed.stdout
    assert record not in {e["record"] for e in trial.json("quarantine", "list")}
    trial.ok("sync", "--once")
    story = trial.json("referrals", "show", record)
    assert story["delivered_at"] and [q["state"] for q in story["quarantine"]] == ["resolved"]
    retries = trial.json("audit", "list", "--action", "quarantine.retry")
    assert [r["outcome"] for r in retries] == ["unchanged", "stored"]


def test_4_no_command_printed_patient_data(trial: Trial) -> None:
    text = "\n".join(trial.outputs)
    for entry in trial.simulator.export()["referrals"]:
        client = entry["referral"]["Client"]
        for value in (client["NHSNumber"], client["Surname"], client["Contact"]["Mobile"]):
            if value:
                assert str(value) not in text
        for note in entry["note"]:
            assert note["Body"][:40] not in text


def test_the_guide_shows_these_steps() -> None:
    support = DOC.split("## 12. Support: read the system back", 1)[1].split("## 13.", 1)[0]
    for step in (
        "reconcile --repair --reason",
        "reconcile --repair --force --reason",
        "sync --once --flow push",
        "quarantine retry 1",
        "-X DELETE -H 'X-API-Key: trial-key' http://127.0.0.1:8766/_sim/referrals/",
        "/questionnaires/1/edit",
        "/_sim/referrals/PCM-X00001/fix",
        Path(__file__).name,
    ):
        assert step in support, step
    assert "ehr-bridge --config ehr-bridge.toml keys generate" in DOC
