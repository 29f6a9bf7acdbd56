"""``ehr-bridge mapping``: every command through CliRunner, with its error paths and exit codes.

Exit codes per docs/cli.md: 0 done, 1 failed, 2 invalid mapping or input, 3 not found.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ehr_bridge.cli.app import app
from ehr_bridge.mapping import export_json_schema

ROOT = Path(__file__).resolve().parents[2]
PCMIS = ROOT / "mappings" / "pcmis.yaml"
GOLDEN = ROOT / "mappings" / "pcmis.golden"
runner = CliRunner()


def run(*args: str | Path) -> tuple[int, str, str]:
    outcome = runner.invoke(app, ["mapping", *map(str, args)])
    return outcome.exit_code, outcome.stdout, outcome.stderr


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """pcmis.yaml and its golden folder in a scratch folder, free to break."""
    shutil.copyfile(PCMIS, tmp_path / "pcmis.yaml")
    shutil.copytree(GOLDEN, tmp_path / "pcmis.golden")
    return tmp_path / "pcmis.yaml"


def test_check_ok(tmp_path: Path) -> None:
    code, out, _ = run("check", PCMIS)
    assert code == 0 and "ok (mapping pcmis" in out and "api: yes" in out
    code, out, _ = run("check", PCMIS, "--json")
    assert code == 0 and json.loads(out) == {"file": str(PCMIS), "ok": True, "findings": []}


def test_check_reports_code_map_errors_with_exit_2(copy: Path) -> None:
    copy.write_text(copy.read_text().replace('"F": female', '"F": woman'))
    code, out, _ = run("check", copy)
    assert code == 2
    assert "inbound.referral.patient.gender" in out and "invalid" in out


def test_check_a_broken_or_missing_file(copy: Path) -> None:
    copy.write_text(copy.read_text().replace("code_map: sex", "code_map: sexx"))
    code, _, err = run("check", copy)
    assert code == 2 and "unknown code map 'sexx' (did you mean 'sex'?)" in err
    code, _, err = run("check", copy.with_name("absent.yaml"))
    assert code == 3 and "not found" in err


def test_test_passes_and_reports_coverage() -> None:
    code, out, _ = run("test", PCMIS)
    assert code == 0
    assert "PASS  referral-01-gp (inbound)" in out
    assert "source fields no rule reads (inbound): Source.Description" in out
    assert out.rstrip().endswith("16 cases, 0 failed")


def test_test_fails_naming_the_path_and_hides_values_unless_asked(copy: Path) -> None:
    facts = copy.parent / "pcmis.golden" / "referral-01-gp.facts.json"
    facts.write_text(facts.read_text().replace('"postcode": "LS1 4AP"', '"postcode": "LS1 9ZZ"'))
    code, out, _ = run("test", copy)
    assert code == 1
    assert "FAIL  referral-01-gp (inbound)" in out
    assert "changed  patient.postcode  [referral-01-gp.facts.json]" in out
    assert "LS1 4AP" not in out
    code, out, _ = run("test", copy, "--show-values", "--json")
    report = json.loads(out)
    (case,) = [c for c in report["cases"] if not c["passed"]]
    (change,) = case["differences"]["referral-01-gp.facts.json"]
    assert change == {
        "path": "patient.postcode",
        "kind": "changed",
        "old": "LS1 9ZZ",
        "new": "LS1 4AP",
    }


def test_test_reports_a_rule_that_never_fires(copy: Path) -> None:
    copy.write_text(copy.read_text().replace("path: Client.Contact.Mobile", "path: Client.Mobile"))
    code, out, _ = run("test", copy, "--json")
    report = json.loads(out)
    assert code == 1  # the expected facts have a phone number the mapping now misses
    assert report["rules_never_fired"]["inbound"] == ["patient.phone"]
    assert "Client.Contact.Mobile" in report["unread_source_fields"]["inbound"]


def test_test_error_paths(copy: Path, tmp_path: Path) -> None:
    assert run("test", copy, "--golden", tmp_path / "nowhere")[0] == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("test", copy, "--golden", empty)[0] == 3
    (copy.parent / "pcmis.golden" / "referral-01-gp.input.json").write_text("{not json")
    code, _, err = run("test", copy)
    assert code == 2 and "referral-01-gp.input.json" in err
    (copy.parent / "pcmis.golden" / "referral-01-gp.input.json").unlink()
    code, out, _ = run("test", copy)
    assert code == 1 and "referral-01-gp.facts.json has no referral-01-gp.input.json" in out
    (copy.parent / "pcmis.golden" / "new-case.input.json").write_text("{}")
    code, out, _ = run("test", copy)
    assert code == 1 and "FAIL  new-case (inbound)\n    no expected file" in out


def test_preview_prints_the_fhir_bundle() -> None:
    code, out, _ = run(
        "preview", PCMIS, GOLDEN / "referral-01-gp.input.json", "--connection", "acme"
    )
    assert code == 0
    bundle = json.loads(out)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    request = bundle["entry"][1]["resource"]
    assert request["resourceType"] == "ServiceRequest"
    assert request["identifier"][0]["value"] == "PCM-000123"
    assert "acme" in request["identifier"][0]["system"]
    code, out, _ = run("preview", PCMIS, GOLDEN / "referral-01-gp.input.json", "--facts")
    assert json.loads(out)["source_of_referral"] == "A1"


def test_preview_of_an_outbound_document_and_from_stdin() -> None:
    source = (GOLDEN / "care-contact-02-bst.input.json").read_text()
    outcome = runner.invoke(app, ["mapping", "preview", str(PCMIS), "-"], input=source)
    assert outcome.exit_code == 0
    assert json.loads(outcome.stdout)["AppointmentDate"] == "15/07/2026"


def test_preview_of_a_record_that_would_be_quarantined(tmp_path: Path) -> None:
    record = json.loads((GOLDEN / "referral-01-gp.input.json").read_text())
    record["Client"]["NHSNumber"] = "999 000 1236"
    (tmp_path / "bad.json").write_text(json.dumps(record))
    code, out, err = run("preview", PCMIS, tmp_path / "bad.json")
    assert code == 1 and out == ""
    assert "patient.nhs_number" in err and "9990001236" not in err
    (tmp_path / "junk.json").write_text("nope")
    assert run("preview", PCMIS, tmp_path / "junk.json")[0] == 2
    assert run("preview", PCMIS, tmp_path / "absent.json")[0] == 3


def test_diff_shows_what_a_change_would_change(copy: Path, tmp_path: Path) -> None:
    new = tmp_path / "new.yaml"
    text = copy.read_text().replace('"F": female', '"F": other').replace("GP: A1", "GP: A3")
    new.write_text(text)
    code, out, _ = run("diff", copy, new, "--records", GOLDEN)
    assert code == 0
    assert "referral-01-gp.input.json: changed" in out
    assert "changed  entry[0].resource.gender" in out
    assert "care-contact-01-gmt.input.json: unchanged" in out
    assert out.rstrip().endswith("16 records: 2 changed, 14 unchanged")
    assert run("diff", copy, new, "--records", GOLDEN, "--exit-code")[0] == 1
    assert run("diff", copy, copy, "--records", GOLDEN, "--exit-code")[0] == 0


def test_diff_reports_records_that_start_failing(copy: Path, tmp_path: Path) -> None:
    new = tmp_path / "new.yaml"
    new.write_text(copy.read_text().replace("    SELF: B1\n", ""))
    names = ("referral-01-gp.input.json", "referral-02-self-untidy.input.json")
    sample = [json.loads((GOLDEN / name).read_text()) for name in names]
    sample.append({**sample[0], "DateReceived": "31/02/2026"})
    records = tmp_path / "records.json"
    records.write_text(json.dumps(sample))
    code, out, _ = run("diff", copy, new, "--records", records, "--json", "--show-values")
    assert code == 0
    result = json.loads(out)
    assert [result[f"records.json#{n}"]["status"] for n in range(3)] == [
        "unchanged",
        "now fails",
        "still fails",
    ]
    assert "source_of_referral" in result["records.json#1"]["new_error"]
    assert "31/02/2026" not in out  # errors name the rule, never the value


def test_diff_error_paths(copy: Path, tmp_path: Path) -> None:
    assert run("diff", copy, tmp_path / "absent.yaml", "--records", GOLDEN)[0] == 3
    assert run("diff", copy, copy, "--records", tmp_path / "absent")[0] == 3
    (tmp_path / "empty").mkdir()
    assert run("diff", copy, copy, "--records", tmp_path / "empty")[0] == 3
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec_version: 2\n")
    code, _, err = run("diff", copy, broken, "--records", GOLDEN)
    assert code == 2 and "spec_version" in err
    assert run("diff", copy, copy)[0] == 2  # --records is required: a usage error


def test_schema_prints_the_published_schema() -> None:
    code, out, _ = run("schema")
    assert code == 0 and out == export_json_schema()
    assert out == (ROOT / "mappings" / "mapping.schema.json").read_text("utf-8")
