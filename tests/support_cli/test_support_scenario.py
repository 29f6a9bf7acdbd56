"""Acceptance: trust-side changes are found and put right with the CLI alone, and audited.

Against the simulator, someone at the trust deletes a note, edits a score, merges two
patients, and a referral arrives malformed (then is fixed at the trust). A support user
finds each with `reconcile`, `referrals show`, `patients show` and `quarantine list`, puts
each right with `reconcile --repair [--force]`, `sync --once` and `quarantine retry`, and
`audit list` shows every fix, without note text or patient details.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import pytest
from support_cli_kit import Cli, bridge_cli, trust_items


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with bridge_cli(tmp_path_factory.mktemp("scenario"), seed=5, referrals=4, hostile=1) as cli:
        yield cli


def ours(cli: Cli) -> list[str]:
    return sorted(r["trust_referral_id"] for r in cli.json("referrals", "list"))


def finding(report: list[dict[str, Any]], trust_id: str, state: str) -> dict[str, Any]:
    (referral,) = [r for r in report if r["trust_referral_id"] == trust_id]
    (found,) = [f for f in referral["findings"] if f["state"] == state]
    return found


def test_1_a_clean_run_is_in_sync(cli: Cli) -> None:
    result = cli("reconcile")
    assert result.exit_code == 0, result.stdout
    assert "0 with drift" in result.stdout
    report = cli.json("reconcile")
    assert report and all(r["verdict"] == "in sync" and r["in_sync"] > 0 for r in report)


def test_2_deleted_note_and_edited_score_are_found_then_put_right(cli: Cli) -> None:
    state = cli.bridge.simulator.state
    first, second = ours(cli)[:2]
    note = trust_items(cli.bridge, first, "clinical_note")[0]
    state.delete_item(first, "clinical_note", note["id"])
    score = trust_items(cli.bridge, second, "assessment")[0]
    state.edit_item(second, "assessment", score["id"], {"score": (score["score"] + 3) % 20})

    dry = cli("reconcile")
    assert dry.exit_code == 1 and "dry run: nothing changed" in dry.stdout
    report = cli.json("reconcile")
    missing = finding(report, first, "missing")
    changed = finding(report, second, "changed")
    assert missing["kind"] == "clinical_note" and missing["trust_id"] == note["id"]
    assert changed["fields"] == ["score"] and changed["trust_id"] == score["id"]
    assert trust_items(cli.bridge, first, "clinical_note").count(note) == 0  # dry run wrote nothing

    why = "note deleted in error at the trust, ticket 4711"
    repaired = cli("reconcile", "--repair", "--reason", why)
    assert repaired.exit_code == 1  # the edited score is left alone without --force
    # the re-queued note is not at the trust yet: counted as queued, not as in sync
    assert "in sync, 1 queued for repair, 1 with drift" in " ".join(repaired.stdout.split())
    assert "not yet at the trust" in repaired.stdout  # until a push writes it
    assert cli("reconcile", "--repair", "--force", "--reason", why).exit_code == 0
    cli.ok("sync", "--once", "--flow", "push")
    assert cli("reconcile").exit_code == 0

    notes = trust_items(cli.bridge, first, "clinical_note")
    (again,) = [n for n in notes if n["client_reference"] == note["client_reference"]]
    assert again["text"] == note["text"] and again["id"] != note["id"]
    (restored,) = [
        a for a in trust_items(cli.bridge, second, "assessment") if a["id"] == score["id"]
    ]
    assert restored["score"] == score["score"] and restored["version"] == 3

    audit = cli.audit("--referral", first)
    (requeue,) = [a for a in audit if a["action"] == "reconcile.requeue"]
    assert requeue["actor"] == getpass.getuser() and requeue["reason"] == why
    assert requeue["outbox_key"] == missing["outbox_key"]
    rewrite = [a for a in audit if a["action"] == "trust.write" and a["trust_id"] == again["id"]]
    assert rewrite and rewrite[0]["outcome"] == "written"
    (overwrite,) = [a for a in cli.audit("--action", "reconcile.overwrite")]
    assert overwrite["outcome"] == "updated" and overwrite["detail"]["fields"] == ["score"]


def test_3_a_merge_at_the_trust_keeps_one_patient_and_redelivers(cli: Cli) -> None:
    state = cli.bridge.simulator.state
    keep, merged = ours(cli)[2:4]
    kept_patient = cli.json("referrals", "show", keep)["patient_id"]
    old_patient = cli.json("referrals", "show", merged)["patient_id"]
    state.merge_patients(
        state.get_referral(keep)["patient"]["local_id"],
        state.get_referral(merged)["patient"]["local_id"],
    )
    cli.ok("sync", "--once")

    story = cli.json("referrals", "show", merged)
    assert story["patient_id"] == kept_patient
    assert [i["kind"] for i in story["identity"]] == ["trust_merge"]
    assert story["deliveries"][-1]["patient_id"] == kept_patient
    assert [v["patient_id"] for v in story["versions"]][-2:] == [old_patient, kept_patient]
    bundle = json.loads((cli.bridge.platform.referrals_dir / f"{story['id']}.json").read_text())
    (patient,) = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    ]
    assert patient["id"] == kept_patient and patient["link"][0]["type"] == "replaces"

    gone = cli.json("patients", "show", old_patient)
    assert gone["active"] is False and gone["history"][0]["kind"] == "trust_merge"
    kept = cli.json("patients", "show", kept_patient)
    assert {r["trust_referral_id"] for r in kept["referrals"]} >= {keep, merged}
    merge_audit = cli.audit("--action", "identity.trust_merge")
    assert merge_audit and merge_audit[0]["referral_id"] == story["id"]


def test_4_a_malformed_referral_fixed_at_the_trust_is_retried(cli: Cli) -> None:
    state = cli.bridge.simulator.state
    (entry,) = cli.json("quarantine", "list")
    assert entry["field"] == "patient.nhs_number"
    record = entry["record"]
    not_yet = cli("quarantine", "retry", str(entry["id"]), "--reason", "INC1 fixed?")
    assert not_yet.exit_code == 1 and "has not changed" in not_yet.stdout

    state.fix_hostile(record)
    fixed = cli("quarantine", "retry", str(entry["id"]), "--reason", "INC1 fixed")
    assert fixed.exit_code == 0 and "now passes" in fixed.stdout
    assert cli.json("quarantine", "list") == []
    cli.ok("sync", "--once")
    story = cli.json("referrals", "show", record)
    assert story["delivered_at"] and [q["state"] for q in story["quarantine"]] == ["resolved"]
    retries = cli.audit("--action", "quarantine.retry")
    assert [r["outcome"] for r in retries] == ["unchanged", "stored"]
    assert [r["reason"] for r in retries] == ["INC1 fixed?", "INC1 fixed"]


def test_5_the_audit_log_reveals_no_patient_data(cli: Cli) -> None:
    text = json.dumps(cli.audit("--limit", "100000")) + cli.ok("audit", "list").stdout
    export = cli.bridge.simulator.export()
    for entry in export["referrals"]:
        patient = entry["referral"].get("patient")
        if isinstance(patient, dict):
            for field in ("nhs_number", "family_name", "postcode", "phone"):
                if patient.get(field):
                    assert str(patient[field]) not in text, field
        for note in entry["clinical_notes"]:
            assert note["text"][:40] not in text
    assert {"reconcile.run", "reconcile.requeue", "quarantine.retry"} <= {
        a["action"] for a in cli.audit("--limit", "100000")
    }


def test_6_a_re_referral_carries_the_earlier_episode(cli: Cli, tmp_path: Path) -> None:
    state = cli.bridge.simulator.state
    earlier = ours(cli)[0]
    again = state.add_referral(patient_of=earlier)
    cli.ok("sync", "--once")
    story = cli.json("referrals", "show", again["id"])
    assert [p["trust_referral_id"] for p in story["prior_episodes"]] == [earlier]
    earlier_id = cli.referral_id(earlier)
    assert story["deliveries"][-1]["episodes"] == [earlier_id]
    bundle = json.loads((cli.bridge.platform.referrals_dir / f"{story['id']}.json").read_text())
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds == ["Patient", "EpisodeOfCare", "ServiceRequest"]
    episode, request = bundle["entry"][1]["resource"], bundle["entry"][2]["resource"]
    assert episode["referralRequest"] == [{"reference": f"ServiceRequest/{earlier_id}"}]
    assert episode["status"] == "finished" and episode["period"]["end"]
    links = [i["reference"] for i in request["supportingInfo"]]
    assert links == [f"ServiceRequest/{earlier_id}", f"EpisodeOfCare/{episode['id']}"]
    assert "earlier episodes of this patient" in cli.ok("referrals", "show", again["id"]).stdout
