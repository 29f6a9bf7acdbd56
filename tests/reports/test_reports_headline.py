"""What a service manager reads: the headline, the glossary and the column headings.

The headline's figures are the hand-computed cohort's (fixtures/cohort/expected.json):
recovery 3 of 8, 80% within 6 weeks, 90% within 18 weeks, median 21.5 days.
"""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest
from rich.console import Console
from rich.table import Table

from ehr_bridge.domain.measures import MEASURES
from ehr_bridge.reports import build_reports, print_headline, print_report, render_page
from ehr_bridge.reports.glossary import GLOSSARY, glossary
from ehr_bridge.reports.headline import headline, percent_against
from ehr_bridge.reports.outcomes import OutcomeCounts
from ehr_bridge.reports.waits import WaitsReport

GENERATED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NAMES = ("outcomes", "waits", "activity", "governance")


@pytest.fixture(scope="module")
def reports(cohort_episodes, options):
    return build_reports("cohort", cohort_episodes, options)


def test_the_headline_states_each_figure_against_its_standard(reports):
    outcomes, waits, activity, risks = headline(reports)
    assert outcomes.startswith("Recovery 37.5% (3 of 8), below the 50% national standard;")
    assert "reliable improvement 40.0% of the 10 who finished a course of treatment" in outcomes
    assert "80.0% within 6 weeks (42 days), meeting the 75% standard" in waits
    assert "90.0% within 18 weeks (126 days), below the 95% standard" in waits
    assert "median 21.5 days" in waits and "10 referrals that finished" in waits
    assert activity.startswith("Activity: ") and "outside 09:00-17:00 Monday to Friday" in activity
    assert risks == "Risks: none raised in the period."
    assert headline(reports, ["waits"]) == [waits]


def test_at_the_standard_is_meeting_it_and_just_under_is_never_rounded_up(reports):
    at = replace(reports.outcomes, total=OutcomeCounts(finished=4, at_caseness=4, recovered=2))
    assert (
        "50.0% (2 of 4), meeting the 50% national standard"
        in headline(replace(reports, outcomes=at), ["outcomes"])[0]
    )
    assert percent_against(0.4996, 0.5) == "49.96%"
    assert percent_against(0.4949, 0.5) == "49.5%"
    assert percent_against(0.7499, 0.75) == "74.99%"


def test_no_denominator_says_why_rather_than_zero(reports):
    empty = replace(reports, outcomes=replace(reports.outcomes, total=OutcomeCounts()))
    (line,) = headline(empty, ["outcomes"])
    assert line.startswith("Recovery: n/a.") and "cannot be judged" in line
    no_waits = replace(reports, waits=WaitsReport(reports.waits.period, "started", ()))
    (line,) = headline(no_waits, ["waits"])
    assert "no referral started treatment in the period" in line and "0%" not in line


def test_the_glossary_defines_the_terms_a_manager_may_not_know():
    terms = {t.term for t in GLOSSARY}
    for needed in (
        "caseness",
        "paired scores",
        "ADSM",
        "reliable improvement",
        "reliable recovery",
        "reliable deterioration",
        "finished a course of treatment",
        "recovery",
        "wait",
    ):
        assert needed in terms
    assert len({t.anchor for t in GLOSSARY}) == len(GLOSSARY)
    assert {t.term for t in glossary(["waits"])} >= {"wait", "cohort"}
    assert "caseness" not in {t.term for t in glossary(["waits"])}


def test_the_glossary_numbers_are_the_catalogues():
    text = {t.term: t.definition for t in GLOSSARY}
    phq9, gad7 = MEASURES["phq9"], MEASURES["gad7"]
    assert f"PHQ-9 {phq9.caseness:g} or more, GAD-7 {gad7.caseness:g} or more" in text["caseness"]
    assert f"PHQ-9 by {phq9.reliable_change:g} or more" in text["reliable change"]
    assert "75% within 6 weeks (42 days)" in text["wait"]
    assert "95% within 18 weeks (126 days)" in text["wait"]
    assert "50%" in text["recovery"]


class _Tables(HTMLParser):
    """Each table's header cells, and the page's section ids."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[str]] = []
        self.ids: list[str] = []
        self._in_th = False

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        if found.get("id"):
            self.ids.append(found["id"] or "")
        if tag == "table":
            self.tables.append([])
        elif tag == "th":
            self._in_th = True
            self.tables[-1].append("")

    def handle_endtag(self, tag):
        if tag == "th":
            self._in_th = False

    def handle_data(self, data):
        if self._in_th:
            self.tables[-1][-1] += data


def test_every_html_table_heading_is_there_and_unique(reports):
    parsed = _Tables()
    parsed.feed(render_page([reports], GENERATED))
    assert len(parsed.tables) >= 7
    for heads in parsed.tables:
        assert all(h.strip() for h in heads), heads
        assert len(set(heads)) == len(heads), heads
    assert "headline-cohort" in parsed.ids and "glossary" in parsed.ids
    assert "term-caseness" in parsed.ids and "term-adsm" in parsed.ids


def test_the_page_opens_with_the_headline_and_ends_with_the_glossary(reports):
    page = render_page([reports], GENERATED)
    headline_at = page.index('id="headline-cohort"')
    assert headline_at < page.index("<h2>Outcomes</h2>") < page.index('id="glossary"')
    assert "Recovery 37.5% (3 of 8), below the 50% national standard" in page
    only_waits = render_page([reports], GENERATED, ["waits"])
    assert "term-wait" in only_waits and "term-caseness" not in only_waits


class _Recording(Console):
    """A console that keeps the tables it prints."""

    def __init__(self) -> None:
        super().__init__(file=io.StringIO(), width=80)
        self.tables: list[Table] = []

    def print(self, *objects, **kwargs):
        self.tables += [o for o in objects if isinstance(o, Table) and o.show_header]
        super().print(*objects, **kwargs)


def test_the_text_report_has_the_headline_and_unique_headings(reports):
    console = _Recording()
    print_headline(console, reports, NAMES)
    for name in NAMES:
        print_report(console, reports, name)
    out = console.file.getvalue()
    assert out.startswith("Headline: cohort")
    assert "below the 50% national standard" in " ".join(out.split())
    assert len(console.tables) >= 8
    for table in console.tables:
        heads = [str(c.header) for c in table.columns]
        assert all(h.strip() for h in heads), heads
        assert len(set(heads)) == len(heads), heads
