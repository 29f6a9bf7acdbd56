"""Property: no report raises on any stored episode collect could have accepted.

Stores hold what collect accepted over the years: every FHIR date/dateTime form (year,
month, day, with or without seconds, fractions, offsets; offset-less times from before
collect refused them), ICD-10 written either way, totals of any catalogue measure
including decimals, zero-padded codes. Each example is one connection's stored referrals;
every report is built and rendered as table, CSV, JSON and HTML, and the checks below
hold for all of them.
"""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from ehr_bridge.domain import codes
from ehr_bridge.domain.measures import MEASURES, measure_coding
from ehr_bridge.reports import (
    REPORTS,
    Period,
    Protocol,
    ReportOptions,
    build_reports,
    csv_rows,
    episode_from_resources,
    print_report,
    render_page,
    report_json,
)
from ehr_bridge.reports.times import read_when

JsonDict = dict[str, object]
PROTOCOLS = (Protocol("anxiety", ("exposure",), ("F40", "F41")), Protocol("risk", ("risk",)))


def _two(n: int) -> str:
    return f"{n:02d}"


@st.composite
def fhir_times(draw: st.DrawFn) -> str:
    """A FHIR date or dateTime in any form R4 allows, plus the offset-less older form."""
    year = draw(st.integers(1995, 2030))
    month, day = draw(st.integers(1, 12)), draw(st.integers(1, 28))
    form = draw(st.sampled_from(["year", "month", "day", "minutes", "seconds", "fraction"]))
    if form == "year":
        return f"{year:04d}"
    if form == "month":
        return f"{year:04d}-{_two(month)}"
    text = f"{year:04d}-{_two(month)}-{_two(day)}"
    if form == "day":
        return text
    text += f"T{_two(draw(st.integers(0, 23)))}:{_two(draw(st.integers(0, 59)))}"
    if form != "minutes":
        text += f":{_two(draw(st.integers(0, 60)))}"  # 60: a leap second
    if form == "fraction":
        text += "." + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=1, max_size=9)))
    offset = draw(st.sampled_from(["", "Z", "+00:00", "+01:00", "-05:00", "+14:00", "-12:00"]))
    return text + offset


def _score_value(key: str) -> st.SearchStrategy[float]:
    measure = MEASURES[key]
    whole = st.integers(int(measure.total_min), int(measure.total_max))
    if not measure.decimal_total:
        return whole
    return st.one_of(whole, st.decimals(measure.total_min, measure.total_max, places=2).map(float))


@st.composite
def observations(draw: st.DrawFn, ids: JsonDict) -> JsonDict:
    key = draw(st.sampled_from(sorted(MEASURES)))
    observation: JsonDict = {
        "resourceType": "Observation",
        "id": f"obs-{draw(st.integers(0, 10**6))}",
        "status": draw(st.sampled_from(["final", "amended", "entered-in-error"])),
        "code": {"coding": measure_coding(MEASURES[key])},
        "subject": {"reference": f"Patient/{ids['patient']}"},
        "valueQuantity": {"value": draw(_score_value(key)), "unit": "ScoreOf"},
    }
    effective = draw(st.sampled_from(["effectiveDateTime", "effectiveInstant", "effectivePeriod"]))
    when = draw(fhir_times())
    observation[effective] = {"start": when} if effective == "effectivePeriod" else when
    return observation


@st.composite
def encounters(draw: st.DrawFn, ids: JsonDict, number: int) -> JsonDict:
    attendance = draw(st.sampled_from(["2", "3", "4", "5", "05", "6", "06", "7"]))
    appointment = draw(st.sampled_from(["01", "02", "03", "05", "2"]))
    return {
        "resourceType": "Encounter",
        "id": f"{ids['sr']}-enc-{number}",
        "status": "finished",
        "extension": [{"url": codes.ATTENDANCE_EXTENSION, "valueCoding": {"code": attendance}}],
        "type": [{"coding": [{"system": codes.DATASET_APPOINTMENT_TYPE, "code": appointment}]}],
        "participant": [{"individual": {"display": draw(st.sampled_from(["A", "=B", "[x]"]))}}],
        "period": {"start": draw(fhir_times())},
    }


def _note(ids: JsonDict, encounter: JsonDict, text: str) -> JsonDict:
    data = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return {
        "resourceType": "DocumentReference",
        "id": f"doc-{encounter['id']}",
        "status": "current",
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "data": data}}],
        "context": {"encounter": [{"reference": f"Encounter/{encounter['id']}"}]},
    }


@st.composite
def referrals(draw: st.DrawFn, number: int) -> tuple[str, list[JsonDict]]:
    ids: JsonDict = {"sr": f"sr-{number}", "patient": f"p-{number}"}
    problem = draw(st.sampled_from(["F41.0", "F410", "F40.1", "F400", "F42", "F43.1", "F320"]))
    resources: list[JsonDict] = [
        {
            "resourceType": "ServiceRequest",
            "id": ids["sr"],
            "authoredOn": draw(fhir_times()),
            "reasonCode": [{"coding": [{"system": codes.ICD10, "code": problem}]}],
        }
    ]
    for index in range(draw(st.integers(0, 5))):
        encounter = draw(encounters(ids, index))
        resources.append(encounter)
        if draw(st.booleans()):
            resources.append(_note(ids, encounter, draw(st.sampled_from(["exposure", "risk"]))))
    resources += draw(st.lists(observations(ids), max_size=8))
    if draw(st.booleans()):
        resources.append(
            {
                "resourceType": "EpisodeOfCare",
                "id": f"eoc-{number}",
                "status": "finished",
                "extension": [{"url": codes.END_CODE_EXTENSION, "valueCoding": {"code": "46"}}],
                "period": {"start": draw(fhir_times()), "end": draw(fhir_times())},
            }
        )
    return ids["sr"], resources  # type: ignore[return-value]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stored=st.lists(st.integers(0, 10**6), max_size=6, unique=True).flatmap(
        lambda numbers: st.tuples(*(referrals(n) for n in numbers))
    ),
    adsm=st.booleans(),
    period=st.sampled_from(
        [Period(), Period(datetime(2025, 1, 1).date(), datetime(2025, 12, 31).date())]
    ),
)
def test_every_report_builds_and_renders_over_any_stored_data(stored, adsm, period) -> None:
    episodes = []
    for sr_id, resources in stored:
        episode = episode_from_resources(sr_id, f"T-{sr_id}", resources, ["exposure", "risk"])
        assert episode is not None  # every ServiceRequest date form is readable
        kept = len(episode.sessions) + len(
            [u for u in episode.unreadable if "Encounter" in u.resource]
        )
        assert kept == sum(r["resourceType"] == "Encounter" for r in resources)  # none dropped
        assert all(s.start.tzinfo is not None for s in episode.sessions)
        episodes.append(episode)
    options = ReportOptions(period=period, adsm_enabled=adsm, protocols=PROTOCOLS)
    reports = build_reports("prop", episodes, options)
    console = Console(file=io.StringIO(), width=120)
    for name in REPORTS:
        print_report(console, reports, name)
        json.dumps(report_json(reports, name))
        list(csv_rows(reports, name))
    page = render_page([reports], datetime(2026, 1, 1, tzinfo=UTC))
    assert page.startswith("<!DOCTYPE html>") or "<html" in page


@given(fhir_times())
def test_every_fhir_time_form_reads_as_an_aware_instant(text: str) -> None:
    when = read_when(text)
    assert when is not None and when.at.tzinfo is not None
    assert when.at.utcoffset() is not None
