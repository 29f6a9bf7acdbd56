"""The FHIR date/time rule the reports use (docs/reports.md, "Dates and times")."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from ehr_bridge.reports.times import LONDON, read_day, read_when


@pytest.mark.parametrize(
    ("text", "instant", "precision"),
    [
        ("2025", datetime(2025, 1, 1, tzinfo=LONDON), "year"),
        ("2025-07", datetime(2025, 7, 1, tzinfo=LONDON), "month"),
        ("2025-07-14", datetime(2025, 7, 14, tzinfo=LONDON), "day"),
        ("2025-07-14T18:30:00+01:00", datetime(2025, 7, 14, 17, 30, tzinfo=UTC), "time"),
        ("2025-07-14T17:30:00Z", datetime(2025, 7, 14, 17, 30, tzinfo=UTC), "time"),
        # no offset: Europe/London wall-clock time (BST in July, GMT in January)
        ("2025-07-14T18:30:00", datetime(2025, 7, 14, 17, 30, tzinfo=UTC), "time"),
        ("2025-01-14T18:30", datetime(2025, 1, 14, 18, 30, tzinfo=UTC), "time"),
        (
            "2025-07-14T18:30:00.123456789-05:00",
            datetime(2025, 7, 14, 23, 30, 0, 123456, tzinfo=UTC),
            "time",
        ),
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC), "time"),
    ],
)
def test_every_fhir_form_is_an_aware_instant(text, instant, precision):
    when = read_when(text)
    assert when is not None
    assert when.at == instant and when.at.tzinfo is not None
    assert when.precision == precision


@pytest.mark.parametrize(
    "text",
    ["", "not a time", "2025-02-30", "2025-13", "2025-07-14T25:00:00Z", "2025-07-14T10:00+15:00",
     "0001-01-01T00:00:00+01:00", None, 20250714],
)  # fmt: skip
def test_what_names_no_instant_is_none(text):
    assert read_when(text) is None


def test_the_day_is_the_london_day():
    assert read_day("2025-07-14T23:30:00Z") == date(2025, 7, 15)
    assert read_day("2025-01-14T23:30:00Z") == date(2025, 1, 14)
    assert read_day("2025-07-14T23:30:00-05:00") == date(2025, 7, 15)
    assert read_day("2025-07-14") == date(2025, 7, 14)


def test_date_only_and_offset_forms_compare_without_error():
    values = ["2025-07-14", "2025-07-14T09:00:00+01:00", "2025-07", "2025-07-14T08:00:00"]
    instants = sorted(w.at for w in map(read_when, values) if w is not None)
    assert instants[0] == datetime(2025, 7, 1, tzinfo=LONDON)
    # 2025-07-01 00:00 BST is 2025-06-30 23:00 UTC; 09:00+01:00 is 08:00 UTC, after 08:00 BST
    assert instants[-1] - instants[0] == timedelta(days=13, hours=9)
    assert instants[-1].astimezone(UTC).hour == 8
