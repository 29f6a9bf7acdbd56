"""The governance report's risk section: hand-computed figures in every output, no ids.

Real Store on SQLite (and PostgreSQL when ``EHR_BRIDGE_TEST_DATABASE_URL`` is set). Risk
rows are made as collect makes them (``save_submissions``) and moved on as push and the
risk lane move them (``claim_due`` + ``finish_attempt``, ``cancel``,
``record_acknowledgement``, ``resolve_risk``, ``claim_risk_alert``); then the times the
store stamped are set to the scenario's, so every duration below is worked out by hand.

The scenario (connection ``north``, March 2025, judged at 2025-03-31 12:00 UTC, times from
``created_at``):

| risk | created (UTC) | level, reason | write-back | delivered | acknowledged | then |
|---|---|---|---|---|---|---|
| r1 | 03-03 10:00 | urgent, phq9_item9 | done | +30 s | +600 s | |
| r2 | 03-04 10:00 | immediate, provider_flag | done | +90 s | +3000 s | 1 alert |
| r3 | 03-05 10:00 | urgent, phq9_item9 | done | +60 s | | resolved, 2 alerts |
| r4 | 03-10 10:00 | routine_review, risk_assessment | done | +600 s | | open |
| r5 | 03-20 10:00 | urgent, phq9_item9 | dead | | | open, 3 alerts |
| r6 | 03-25 10:00 | urgent, phq9_item9 | quarantined | | | open, 1 alert |
| r7 | 03-30 12:00 | urgent, detected_issue | none queued | | | open |
| r8 | 03-31 11:50 | urgent, phq9_item9 | pending | | | open (10 min old) |
| r10 | 03-15 10:00 | urgent, phq9_item9 | cancelled | | | resolved |
| r0 | 02-28 23:30 | urgent | done | | | (28 Feb in the UK: out) |
| r9 | 03-31 23:30 | urgent | done | | | (1 April in the UK: out) |

Delivered [30, 60, 90, 600] s: median (60 + 90) / 2 = 75; 90th percentile at rank
0.9 x 3 = 2.7, 90 + 0.7 x (600 - 90) = 447. Acknowledged [600, 3000] s: median 1800;
90th at rank 0.9, 600 + 0.9 x 2400 = 2760. Open: r4-r8 (5); past 60 minutes: r4-r7 (4).
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import update
from typer.testing import CliRunner

from ehr_bridge.cli.app import app
from ehr_bridge.config import RiskConfig
from ehr_bridge.domain.facts import PatientFacts, ReferralFacts
from ehr_bridge.domain.referral import ProviderRef, build_referral_resources
from ehr_bridge.reports import (
    Period,
    ReportOptions,
    build_reports,
    csv_rows,
    print_report,
    render_page,
    report_json,
    reports_from_store,
)
from ehr_bridge.reports.risks import duration_label, percentile
from ehr_bridge.store import RISK_PRIORITY, NewOutboxItem, NewRiskEvent, PulledReferral, Store
from ehr_bridge.store.models import OutboxRow, RiskEventRow
from ehr_bridge.store.submissions import CollectedBundle
from support.databases import BACKENDS, database_url
from support.encryption import PLAIN_TEST_STORE

CONNECTION = "north"
#: values that must never appear in any output: the trust's ids and who acknowledged
TRUST_REFERRAL = "TRR-4471"
ACKNOWLEDGED_BY = "duty.clinician.7Q"
TRUST_ITEM = "TRUST-ITEM-"
RESOLVED_BY = "ops.jane"
RESOLVE_REASON = "phoned the duty team"
MARCH = Period(date(2025, 3, 1), date(2025, 3, 31))
AS_OF = datetime(2025, 3, 31, 12, 0, tzinfo=UTC)
EXPECTED = {
    "as_of": "2025-03-31T12:00:00+00:00",
    "acknowledge_within_minutes": 60,
    "raised": 9,
    "by_level": {"routine_review": 1, "urgent": 7, "immediate": 1},
    "by_reason": {
        "phq9_item9": 6,
        "questionnaire_item": 0,
        "provider_flag": 1,
        "risk_assessment": 1,
        "detected_issue": 1,
    },
    "from_quarantine": 1,
    "not_written": {
        "total": 4,
        "quarantined": 1,
        "no_write_back": 1,
        "dead_lettered": 1,
        "cancelled": 1,
    },
    "delivered": {"count": 4, "median_seconds": 75.0, "p90_seconds": 447.0},
    "acknowledged": {"count": 2, "median_seconds": 1800.0, "p90_seconds": 2760.0},
    "resolved": 2,
    "open": 5,
    "overdue": 4,
    "alerts_sent": 7,
}
runner = CliRunner()


@dataclass(frozen=True)
class Risk:
    key: str
    created: datetime
    level: str = "urgent"
    reason: str = "phq9_item9"
    origin: str = "session"
    #: done, dead, cancelled, pending, or None: the trust takes no risk items
    outbox: str | None = "done"
    delivered_after: float | None = None
    acknowledged_after: float | None = None
    resolved: bool = False
    alerts: int = 0


def _at(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2025, month, day, hour, minute, tzinfo=UTC)


SCENARIO = (
    Risk("r1", _at(3, 10), delivered_after=30, acknowledged_after=600),
    Risk(
        "r2",
        _at(4, 10),
        "immediate",
        "provider_flag",
        delivered_after=90,
        acknowledged_after=3000,
        alerts=1,
    ),
    Risk("r3", _at(5, 10), delivered_after=60, resolved=True, alerts=2),
    Risk("r4", _at(10, 10), "routine_review", "risk_assessment", delivered_after=600),
    Risk("r5", _at(20, 10), outbox="dead", alerts=3),
    Risk("r6", _at(25, 10), origin="quarantine", outbox=None, alerts=1),
    Risk("r7", _at(30, 12), reason="detected_issue", outbox=None),
    Risk("r10", _at(15, 10), outbox="cancelled", resolved=True),
    Risk("r0", _at(28, 23, 30, month=2), delivered_after=45, acknowledged_after=100),
    Risk("r9", _at(31, 23, 30), delivered_after=45),
    Risk("r8", _at(31, 11, 50), outbox="pending"),  # last: never claimed
)


def _pull_referral(store: Store) -> str:
    """One referral, pulled as pull stores it; its trust id must never be printed."""
    provider = ProviderRef(code="PROV01", display="Online therapy provider (test)")
    facts = ReferralFacts(
        trust_referral_id=TRUST_REFERRAL,
        received_date=date(2025, 2, 1),
        source_of_referral="A1",
        presenting_problem="F32.1",
        referred_on_to=provider.code,
        patient=PatientFacts(local_id="P-4471"),
    )
    made = build_referral_resources(
        CONNECTION, provider, facts, today=date(2026, 1, 1), allow_test_range=True
    )
    pulled = PulledReferral(
        trust_referral_id=TRUST_REFERRAL,
        source_hash="hash-4471",
        source_version=None,
        status="active",
        patient_local_id="P-4471",
        nhs_number=None,
        patient=made.patient,
        service_request=made.service_request,
    )
    store.save_pull_page(CONNECTION, [pulled], [], None)
    return str(made.service_request["id"])


def _add(store: Store, referral: str, risk: Risk) -> None:
    queued = risk.origin == "session" and risk.outbox is not None
    outbox = [
        NewOutboxItem(
            risk.key, referral, "risk_alert", "Flag", f"flag-{risk.key}", priority=RISK_PRIORITY
        )
    ]
    event = NewRiskEvent(
        id=risk.key,
        referral_id=referral,
        outbox_key=risk.key if queued else None,
        origin=risk.origin,
        level=risk.level,
        reason=risk.reason,
        raised_at=risk.created - timedelta(minutes=5),
    )
    bundle = CollectedBundle(
        f"h-{risk.key}", f"hash-{risk.key}", None, (), outbox if queued else [], risks=[event]
    )
    store.save_submissions(CONNECTION, [bundle])
    if risk.outbox in ("done", "dead"):
        [row] = store.claim_due(CONNECTION, owner="w", lease_seconds=60, risk_only=True)
        if risk.outbox == "done":
            store.finish_attempt(row.id, state="done", owner="w", trust_id=TRUST_ITEM + risk.key)
        else:
            store.finish_attempt(row.id, state="dead", owner="w", error="x", error_code="http_422")
    elif risk.outbox == "cancelled":
        store.cancel(risk.key, "no longer needed", actor=RESOLVED_BY)
    if risk.acknowledged_after is not None:
        at = risk.created + timedelta(seconds=risk.acknowledged_after)
        assert store.record_acknowledgement(risk.key, at, ACKNOWLEDGED_BY)
    if risk.resolved:
        store.resolve_risk(risk.key, actor=RESOLVED_BY, reason=RESOLVE_REASON)
    previous = None
    for alert in range(risk.alerts):
        at = risk.created + timedelta(minutes=60 + 30 * alert)
        assert store.claim_risk_alert(risk.key, previous, at)
        previous = at
    _stamp(store, risk)


def _stamp(store: Store, risk: Risk) -> None:
    """Set the times the store stamped with its own clock to the scenario's."""
    with store.session() as s:
        s.exec(
            update(RiskEventRow).where(RiskEventRow.id == risk.key).values(created_at=risk.created)
        )
        if risk.delivered_after is not None:
            done = risk.created + timedelta(seconds=risk.delivered_after)
            s.exec(update(OutboxRow).where(OutboxRow.id == risk.key).values(done_at=done))


def fill(store: Store, risks: tuple[Risk, ...] = SCENARIO) -> None:
    referral = _pull_referral(store)
    for risk in risks:
        _add(store, referral, risk)


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    built = database_url(request.param, tmp_path)
    store = Store(built)
    try:
        fill(store)
    finally:
        store.close()
    return built


@pytest.fixture
def store(url: str):
    opened = Store(url)
    yield opened
    opened.close()


def _reports(store: Store, period: Period = MARCH, minutes: float = 60, now: datetime = AS_OF):
    risk = RiskConfig(acknowledge_within_minutes=minutes)
    return reports_from_store(store, CONNECTION, ReportOptions(period=period), risk=risk, now=now)


# --- the figures ---------------------------------------------------------------------------


def test_percentile_is_the_median_convention_carried_to_the_90th():
    for values in ([30, 60, 90, 600], [5], [1, 2], [3, 1, 2], [600, 3000]):
        assert percentile(values, 0.5) == statistics.median(values)
    assert percentile([30, 60, 90, 600], 0.9) == pytest.approx(447)
    assert percentile([600, 3000], 0.9) == pytest.approx(2760)
    assert percentile([42], 0.9) == 42 and percentile([], 0.9) is None
    assert statistics.quantiles([30, 60, 90, 600], n=10, method="inclusive")[8] == 447


def test_the_risk_section_has_the_hand_computed_figures(store):
    reports = _reports(store)
    assert report_json(reports, "governance")["risks"] == EXPECTED


def test_a_risk_counts_in_the_period_by_the_uk_day_it_was_recorded(store):
    everything = _reports(store, Period()).risks
    assert everything.raised == 11  # r0 and r9 too
    assert everything.delivered.count == 6 and everything.acknowledged.count == 3
    # 23:30 UTC on 31 March is 00:30 on 1 April in the UK (summer time began on the 30th)
    april = _reports(store, Period(date(2025, 4, 1), None)).risks
    assert (april.raised, april.delivered.seconds) == (1, (45.0,))
    # 23:30 UTC on 28 February is still 28 February in the UK (GMT)
    february = _reports(store, Period(None, date(2025, 2, 28))).risks
    assert (february.raised, february.acknowledged.seconds) == (1, (100.0,))
    assert _reports(store, Period(date(2025, 5, 1), None)).risks.raised == 0


def test_the_connections_window_decides_what_is_overdue(store):
    # r7 is exactly 24 hours old: at the window is past it, as the escalation pages
    assert _reports(store, minutes=24 * 60).risks.overdue == 4
    early = AS_OF - timedelta(seconds=1)
    assert _reports(store, minutes=24 * 60, now=early).risks.overdue == 3
    assert _reports(store, minutes=5).risks.overdue == 5  # r8, 10 minutes old, too
    assert _reports(store, now=AS_OF + timedelta(days=30)).risks.open == 5  # still open


def test_an_acknowledgement_the_trust_clock_put_first_waits_zero(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'skew.db'}")
    try:
        fill(store, (Risk("r1", _at(3, 10), delivered_after=30, acknowledged_after=-20),))
        risks = _reports(store).risks
    finally:
        store.close()
    assert risks.acknowledged.seconds == (0.0,)


def test_without_risks_the_section_is_zeros_and_n_a(cohort_episodes, options):
    reports = build_reports("cohort", cohort_episodes, options)
    body = report_json(reports, "governance")["risks"]
    assert body["raised"] == 0 and body["open"] == 0 and body["not_written"]["total"] == 0
    assert body["delivered"] == {"count": 0, "median_seconds": None, "p90_seconds": None}
    assert "Risk events" in render_page([reports], AS_OF)


def test_durations_are_shown_in_seconds_then_minutes():
    assert [duration_label(v) for v in (None, 30, 59.4, 75, 447, 2760)] == [
        "n/a",
        "30 s",
        "59 s",
        "1.2 min",
        "7.5 min",
        "46.0 min",
    ]


# --- every output --------------------------------------------------------------------------


def _text(reports) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_report(console, reports, "governance")
    return console.file.getvalue()


def _csv(reports) -> dict[tuple[str, str], tuple[object, ...]]:
    rows = [row for name in ("outcomes", "governance") for row in csv_rows(reports, name)]
    return {(r[2], r[3]): r[4:] for r in rows if str(r[2]).startswith("risks/")}


def _assert_no_ids(output: str, store: Store) -> None:
    [referral] = store.list_referrals(CONNECTION)
    for secret in (TRUST_REFERRAL, ACKNOWLEDGED_BY, TRUST_ITEM, RESOLVED_BY, RESOLVE_REASON):
        assert secret not in output, secret
    assert referral.id not in output
    assert "r10" not in output  # nor the risks' own ids


def test_the_table_output_has_the_section(store):
    out = _text(_reports(store))
    rows = [[c.strip() for c in row.split("│") if c.strip()] for row in out.splitlines()]
    assert "Risks: north, raised in ehr-bridge 2025-03-01 to 2025-03-31" in out
    for line in (
        ("raised", "9"),
        ("level urgent", "7"),
        ("reason phq9_item9", "6"),
        ("from quarantined bundles", "1"),
        ("could not be written", "4"),
        ("dead-lettered", "1"),
        ("delivered to the trust", "4", "1.2 min", "7.5 min"),
        ("acknowledged at the trust", "2", "30.0 min", "46.0 min"),
        ("resolved by an operator", "2"),
        ("open now", "5"),
        ("open past 60 minutes (overdue)", "4"),
        ("alerts sent", "7"),
    ):
        assert list(line) in rows, line
    _assert_no_ids(out, store)


def test_the_csv_output_has_the_section(store):
    rows = _csv(_reports(store))
    assert rows[("risks/raised", "")] == (9, None, None, None)
    assert rows[("risks/raised_by_level", "immediate")][0] == 1
    assert rows[("risks/raised_by_reason", "detected_issue")][0] == 1
    assert rows[("risks/not_written", "")][0] == 4
    assert rows[("risks/not_written", "no_write_back")][0] == 1
    assert rows[("risks/delivered", "")][0] == 4
    assert rows[("risks/delivered_median_seconds", "")][3] == 75.0
    assert rows[("risks/acknowledged_p90_seconds", "")][3] == 2760.0
    assert rows[("risks/overdue", "")][0] == 4
    assert rows[("risks/alerts_sent", "")][0] == 7
    assert rows[("risks/acknowledge_within_minutes", "")][3] == 60
    # the section belongs to the governance report only
    outcomes = [r for r in csv_rows(_reports(store), "outcomes") if str(r[2]).startswith("risks")]
    assert outcomes == []


def test_the_html_output_has_the_section(store):
    page = render_page([_reports(store)], AS_OF)
    section = page.split("<h2>Risk events</h2>")[1]
    assert "<td>open past 60 minutes (overdue)</td><td>4</td>" in section
    assert "<td>delivered to the trust</td><td>4</td><td>1.2 min</td><td>7.5 min</td>" in section
    assert "<td>\u00a0\u00a0\u00a0\u00a0level routine_review</td><td>1</td>" in section
    assert "Risk events" not in render_page([_reports(store)], AS_OF, ["waits"])
    _assert_no_ids(page, store)


# --- through the command line --------------------------------------------------------------


def _config(folder: Path, url: str, minutes: float) -> Path:
    path = folder / f"ehr-bridge-{minutes:g}.toml"
    path.write_text(
        "\n".join(
            [
                f'[database]\nurl = "{url}"',
                PLAIN_TEST_STORE,
                f'[[connection]]\nname = "{CONNECTION}"\nmapping = "mappings/iaptus.yaml"',
                "test_connection = true",
                '[connection.provider_org]\ncode = "PROV01"',
                '[connection.trust]\nadapter = "iaptus"',
                '[connection.provider]\nadapter = "folder"',
                f"[connection.risk]\nacknowledge_within_minutes = {minutes}",
            ]
        ),
        encoding="utf-8",
    )
    return path


def _run(config: Path, *args: str) -> str:
    outcome = runner.invoke(app, ["--config", str(config), "report", *args])
    assert outcome.exit_code == 0, outcome.stdout + outcome.stderr
    return outcome.stdout


PERIOD = ("--from", "2025-03-01", "--to", "2025-03-31")


def test_every_cli_output_carries_the_section_and_no_id(url, store, tmp_path):
    config = _config(tmp_path, url, 30)
    (governance,) = json.loads(_run(config, "governance", *PERIOD, "--json"))
    (combined,) = json.loads(_run(config, "all", *PERIOD, "--json"))
    # run now, long after March: every open risk is past its 30 minutes, r8 too
    want = {**EXPECTED, "acknowledge_within_minutes": 30, "overdue": 5}
    for risks in (governance["risks"], combined["governance"]["risks"]):
        assert {k: v for k, v in risks.items() if k != "as_of"} == {
            k: v for k, v in want.items() if k != "as_of"
        }
    table = _run(config, "governance", *PERIOD)
    assert "open past 30 minutes (overdue)" in table and "Risks: north" in table
    rows = list(csv.DictReader(io.StringIO(_run(config, "all", *PERIOD, "--csv"))))
    raised = [r for r in rows if r["metric"] == "risks/raised"]
    assert [(r["report"], r["count"]) for r in raised] == [("governance", "9")]
    page = tmp_path / "report.html"
    _run(config, "all", *PERIOD, "--html", str(page))
    html = page.read_text(encoding="utf-8")
    assert "<td>open past 30 minutes (overdue)</td><td>5</td>" in html
    outputs = [json.dumps(governance), json.dumps(combined), table, json.dumps(rows), html]
    for output in outputs:
        _assert_no_ids(output, store)


def test_the_cli_reads_each_connections_window(url, store, tmp_path):
    fresh = Risk("r11", datetime.now(UTC) - timedelta(minutes=20), outbox="pending")
    _add(store, store.list_referrals(CONNECTION)[0].id, fresh)
    loose, tight = _config(tmp_path, url, 30), _config(tmp_path, url, 10)
    (within,) = json.loads(_run(loose, "governance", "--json"))
    (past,) = json.loads(_run(tight, "governance", "--json"))
    # no period: r9 (delivered, never acknowledged) is open too; r11 is 20 minutes old
    assert (within["risks"]["open"], within["risks"]["overdue"]) == (7, 6)
    assert (past["risks"]["open"], past["risks"]["overdue"]) == (7, 7)
