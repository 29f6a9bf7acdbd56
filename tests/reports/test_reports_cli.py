"""`ehr-bridge report ...` through Typer's CliRunner, on the cohort stored in SQLite."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ehr_bridge.cli.app import app
from support.encryption import security_section

runner = CliRunner()
PERIOD = ["--from", "2025-01-01", "--to", "2025-06-30"]


def _toml_table(name: str, table: dict[str, list[str]]) -> str:
    lines = [f"[{name}]"]
    lines += [f"{key} = {json.dumps(values)}" for key, values in table.items()]
    return "\n".join(lines)


def write_config(folder: Path, database_url: str, reports: dict, adsm: bool = False) -> Path:
    path = folder / "ehr-bridge.toml"
    path.write_text(
        "\n".join(
            [
                f'[database]\nurl = "{database_url}"',
                security_section(folder),
                f"[reports]\nadsm_enabled = {'true' if adsm else 'false'}",
                _toml_table("reports.phrases", reports["phrases"]),
                _toml_table("reports.protocol_problems", reports["protocol_problems"]),
                '[[connection]]\nname = "cohort"\nmapping = "mappings/iaptus.yaml"',
                '[connection.provider_org]\ncode = "PROV01"',
                '[connection.trust]\nadapter = "iaptus"',
                '[connection.provider]\nadapter = "folder"',
            ]
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def config(tmp_path_factory, cohort_db, cohort) -> Path:
    return write_config(tmp_path_factory.mktemp("cli"), cohort_db, cohort["reports"])


def _run(config: Path, *args: str) -> tuple[int, str]:
    outcome = runner.invoke(app, ["--config", str(config), "report", *args])
    return outcome.exit_code, outcome.stdout


def test_outcomes_json_matches_the_hand_computed_values(config, expected):
    code, out = _run(config, "outcomes", *PERIOD, "--json")
    assert code == 0
    (report,) = json.loads(out)
    assert report["connection"] == "cohort"
    assert report["period"] == {"from": "2025-01-01", "to": "2025-06-30"}
    for key in ("finished_treatment", "recovery", "reliable_improvement", "reliable_recovery"):
        assert report[key] == expected["outcomes"][key], key


def test_adsm_switch_in_the_config(tmp_path, cohort_db, cohort, expected):
    adsm_config = write_config(tmp_path, cohort_db, cohort["reports"], adsm=True)
    code, out = _run(adsm_config, "outcomes", *PERIOD, "--json")
    assert code == 0
    (report,) = json.loads(out)
    assert report["adsm_enabled"] is True
    assert report["recovery"] == expected["outcomes_with_adsm"]["recovery"]


def test_waits_started_cohort(config, expected):
    code, out = _run(config, "waits", *PERIOD, "--cohort", "started", "--json")
    assert code == 0
    (report,) = json.loads(out)
    want = expected["waits"]["started"]
    assert (report["cohort"], report["referrals"], report["median_days"]) == ("started", 13, 21)
    assert report["within_6_weeks"] == want["within_6_weeks"]


def test_activity_csv_is_long_format(config):
    code, out = _run(config, "activity", *PERIOD, "--csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == [
        "connection",
        "report",
        "metric",
        "group",
        "count",
        "denominator",
        "rate",
        "value",
    ]
    dna = next(r for r in rows if r["metric"] == "did_not_attend")
    assert (dna["count"], dna["denominator"], dna["rate"]) == ("2", "31", "0.0645")
    evening = next(r for r in rows if r["metric"] == "attended_by_hour" and r["group"] == "18")
    assert evening["count"] == "5"


def test_governance_table_shows_counts_not_notes(config, cohort):
    code, out = _run(config, "governance", *PERIOD)
    assert code == 0
    assert "Therapist A" in out and "R07" in out and "worry time" in out
    assert "relapse prevention" not in out and "feared situations" not in out


def test_outcomes_table(config):
    code, out = _run(config, "outcomes", *PERIOD)
    assert code == 0
    assert "recovery (national standard 50%)" in out and "37.5%" in out and "2025-04" in out


def test_all_html_writes_the_page(config, tmp_path):
    page = tmp_path / "report.html"
    code, out = _run(config, "all", *PERIOD, "--html", str(page))
    assert code == 0 and f"report written to {page}" in out
    html = page.read_text(encoding="utf-8")
    assert html.count("<svg ") == 4 and "chart-cohort-hours" in html


def test_all_json_has_every_report(config):
    code, out = _run(config, "all", "--json")
    assert code == 0
    (report,) = json.loads(out)
    assert set(report) == {
        "connection",
        "outcomes",
        "waits",
        "activity",
        "governance",
        "data_quality",
    }
    assert report["outcomes"]["finished_treatment"] == 11  # no period: R11 (July) too
    # the data-quality block is given once per connection, not inside each report
    assert not any("data_quality" in report[name] for name in ("outcomes", "waits"))
    assert report["data_quality"]["unreadable"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["outcomes", "--from", "2025-13-01"], "--from: not a date"),
        (["outcomes", "--from", "2025-06-01", "--to", "2025-01-01"], "--from is after --to"),
        (["outcomes", "--json", "--csv"], "choose one of"),
        (
            ["waits", "--cohort", "everyone"],
            "--cohort: unknown cohort 'everyone' (known: finished, started)",
        ),
        (["outcomes", "--connection", "nope"], "unknown connection"),
        (["all", "--html", "/nonexistent/dir/report.html"], "--html: cannot write"),
    ],
)
def test_bad_usage_exits_2_with_a_reason(config, args, message):
    outcome = runner.invoke(app, ["--config", str(config), "report", *args])
    assert outcome.exit_code == 2
    assert message in outcome.stderr


def test_demo_ends_with_an_outcomes_summary_that_matches_the_report(tmp_path):
    outcome = runner.invoke(
        app, ["demo", "--workdir", str(tmp_path), "--referrals", "4", "--hostile", "0"]
    )
    assert outcome.exit_code == 0, outcome.stdout[-2000:]
    summary = outcome.stdout.split("Outcomes (national NHS Talking Therapies definitions)")[1]
    assert (tmp_path / "report.html").read_text(encoding="utf-8").count("<svg ") == 4
    code, out = _run(tmp_path / "ehr-bridge.toml", "outcomes", "--json")
    assert code == 0
    (report,) = json.loads(out)
    recovery = report["recovery"]
    assert f"finished a course of treatment: {report['finished_treatment']} " in summary
    assert f"recovery: {recovery['count']} of {recovery['denominator']} (" in summary
    assert "median wait to first treatment:" in summary
