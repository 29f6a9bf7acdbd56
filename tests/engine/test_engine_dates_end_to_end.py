"""End to end: a provider's times reach each trust in Europe/London, or are refused at collect.

Issue 13 point 5. FHIR allows a date-only or offset-less ``dateTime``, but the data set
needs CareContTime and AssToolCompTime, and an offset-less time cannot be placed on a
clock, so collect quarantines either (``datetime_precision``, naming the field) and
nothing of that bundle reaches the trust. A time with an offset reaches the trust as the
trust keeps it: the IAPTUS-style and PC-MIS trusts take a London date and ``HH:MM`` for a
contact, IAPTUS a UTC instant for a score, PC-MIS only the London day of a score, HL7
OBX-14 a DTM with its offset, a FHIR trust the instant. ``report all --json`` then
exits 0. The HL7 trust takes no care contacts (ORU^R01 and MDM^T02 only), so its
contact times are not checked; its score times are.

Through the real collect and push flows against each trust simulator (``support.trusts``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from ehr_bridge.cli.app import app
from support.trusts import KINDS, PHQ9_ITEMS, TrustHarness, score_bundle, trust_harness, with_times

JsonDict = dict[str, Any]
LONDON = ZoneInfo("Europe/London")


@pytest.fixture(scope="module", params=KINDS)
def harness(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrustHarness]:
    with trust_harness(request.param, tmp_path_factory.mktemp(request.param), referrals=1) as h:
        yield h


def _bundle(harness: TrustHarness, number: int, **times: str) -> JsonDict:
    (referral,) = harness.referrals
    base = score_bundle(referral, "phq9", PHQ9_ITEMS, number=number, note=f"Session {number}.")
    return with_times(base, **times)


def _trust_records(harness: TrustHarness) -> list[JsonDict]:
    return [*harness.trust_scores(), *harness.trust_contacts(), *harness.trust_notes()]


def _entry_of(bundle: JsonDict, resource_type: str) -> int:
    types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    return types.index(resource_type)


# --- refused at collect ------------------------------------------------------------------
_FULL = {
    "start": "2026-03-04T10:00:00+00:00",
    "end": "2026-03-04T10:50:00+00:00",
    "effective": "2026-03-04T10:45:00+00:00",
    "authored": "2026-03-04T10:45:00+00:00",
}
REFUSED = [
    ("effective-date-only", {"effective": "2026-03-04"}, "Observation", "effectiveDateTime"),
    (
        "effective-offset-less",
        {"effective": "2026-03-04T10:00:00"},
        "Observation",
        "effectiveDateTime",
    ),
    ("start-date-only", {"start": "2026-03-04"}, "Encounter", "period.start"),
    ("start-offset-less", {"start": "2026-03-04T10:00:00"}, "Encounter", "period.start"),
]


@pytest.mark.parametrize(
    ("number", "changed", "resource_type", "field"),
    [(n, c, t, f) for n, (_, c, t, f) in enumerate(REFUSED, start=11)],
    ids=[case[0] for case in REFUSED],
)
def test_a_date_only_or_offset_less_time_is_quarantined_and_nothing_reaches_the_trust(
    harness: TrustHarness, number: int, changed: dict[str, str], resource_type: str, field: str
) -> None:
    bundle = _bundle(harness, number, **{**_FULL, **changed})
    before = _trust_records(harness)
    harness.submit(bundle)
    harness.sync()

    entries = [q for q in harness.quarantined() if bundle["id"] in q.record_ref]
    assert [(q.source, q.code, q.field) for q in entries] == [
        (
            "submission",
            "datetime_precision",
            f"entry[{_entry_of(bundle, resource_type)}].resource.{field}",
        )
    ], [(q.record_ref, q.code, q.field) for q in harness.quarantined()]
    assert _trust_records(harness) == before
    assert "2026-03-04" not in entries[0].reason  # the rule, never the value


# --- accepted, with the right local date and time ----------------------------------------
@dataclass(frozen=True)
class Case:
    """Times as the provider sends them, and what they are on the London clock."""

    start: str
    end: str
    effective: str
    #: the session's start, London date and HH:MM
    local_start: tuple[date, str]
    #: the score's completion, as an instant, and its London day
    completed: datetime
    completed_day: date


ACCEPTED = {
    # summer: 23:30 UTC on 1 July is 00:30 BST on 2 July
    "bst": Case(
        start="2026-07-01T23:30:00+00:00",
        end="2026-07-02T00:20:00+00:00",
        effective="2026-07-02T00:15:00+01:00",
        local_start=(date(2026, 7, 2), "00:30"),
        completed=datetime(2026, 7, 1, 23, 15, tzinfo=UTC),
        completed_day=date(2026, 7, 2),
    ),
    # winter: London is on GMT, so a +01:00 time is an hour earlier there
    "gmt": Case(
        start="2026-01-16T00:30:00+01:00",
        end="2026-01-16T01:20:00+01:00",
        effective="2026-01-15T23:55:00Z",
        local_start=(date(2026, 1, 15), "23:30"),
        completed=datetime(2026, 1, 15, 23, 55, tzinfo=UTC),
        completed_day=date(2026, 1, 15),
    ),
}


@pytest.mark.parametrize(("number", "name"), [(21, "bst"), (22, "gmt")], ids=["bst", "gmt"])
def test_a_time_with_an_offset_reaches_the_trust_on_the_london_clock(
    harness: TrustHarness, number: int, name: str
) -> None:
    case = ACCEPTED[name]
    bundle = _bundle(
        harness,
        number,
        start=case.start,
        end=case.end,
        effective=case.effective,
        authored=case.effective,
    )
    scores, contacts = harness.trust_scores(), harness.trust_contacts()
    harness.submit(bundle)
    harness.sync()

    assert [q for q in harness.quarantined() if bundle["id"] in q.record_ref] == []
    assert set(harness.outbox_states().values()) == {"done"}, harness.dead_errors()
    (score,) = [s for s in harness.trust_scores() if s not in scores]
    new_contacts = [c for c in harness.trust_contacts() if c not in contacts]
    _check_score(harness, score, case)
    _check_contacts(harness, new_contacts, case)


def _check_score(harness: TrustHarness, score: JsonDict, case: Case) -> None:
    if harness.kind == "pcmis":  # DateCompleted is a day: the London day
        assert score["completed_at"] == case.completed_day
        return
    completed = score["completed_at"]
    assert isinstance(completed, datetime) and completed == case.completed
    assert completed.astimezone(LONDON).date() == case.completed_day
    if harness.kind == "fhir":  # the trust keeps the provider's offset; same instant
        assert score["raw"]["effectiveDateTime"] == case.effective


def _check_contacts(harness: TrustHarness, contacts: list[JsonDict], case: Case) -> None:
    day, clock = case.local_start
    if harness.kind == "hl7v2":
        assert contacts == []  # an HL7 v2 trust takes scores and notes only
    elif harness.kind == "iaptus":
        assert [(c["date"], c["time"]) for c in contacts] == [(day.isoformat(), clock)]
    elif harness.kind == "pcmis":
        assert [(c["AppointmentDate"], c["StartTime"]) for c in contacts] == [
            (day.strftime("%d/%m/%Y"), clock)
        ]
    else:
        (encounter,) = contacts
        start = datetime.fromisoformat(encounter["period"]["start"].replace("Z", "+00:00"))
        assert start == datetime.fromisoformat(case.start)


# --- the reports over what collect accepted ----------------------------------------------
def test_report_all_exits_zero_over_what_collect_kept(harness: TrustHarness) -> None:
    harness.submit(_bundle(harness, 31, **{**_FULL, "effective": "2026-03-04"}))
    harness.submit(_bundle(harness, 32, **_FULL))
    harness.sync()

    config = harness.workdir / "ehr-bridge.toml"
    outcome = CliRunner().invoke(app, ["--config", str(config), "report", "all", "--json"])

    assert outcome.exit_code == 0, outcome.output
    (report,) = json.loads(outcome.stdout)
    assert report["connection"] == harness.conn.name
    assert report["data_quality"]["unreadable"] == []
    # the accepted 10:00 session counts once; the refused one of the same hour never does
    assert report["activity"]["by_hour"]["10"] == 1
    assert report["activity"]["attended_without_time"] == 0
