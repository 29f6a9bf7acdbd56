"""The HTML page: self-contained, escaped, and (where Chromium exists) really rendered.

The static checks run everywhere. The render checks need Chromium, which CI images and
new machines may not have, so they skip without it (``EHR_BRIDGE_REQUIRE_CHROMIUM=1``
makes that a failure); ``scripts/render-report.py`` and ``scripts/check-report-layout.py``
are the documented ways to run the same checks by hand (docs/reports.md).

The layout check lays the page out in headless Chromium with real fonts and measures
every chart text, bar and line (``getBoundingClientRect``, by a script the check adds to
a copy of the page and reads back with ``--dump-dom``): no label may touch another label,
a bar or a line, or leave its chart. It runs on the cohort's page and on a page made to
be hard (rates just under and over the 50% line, 12 and 24 months, full and empty
bars), and once on a page drawn wrong, to show it can fail.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ehr_bridge.reports import build_reports, render_page, svg
from ehr_bridge.reports.activity import ActivityReport
from ehr_bridge.reports.html import (
    OFFICE_HOURS_COLOUR,
    OUT_OF_HOURS_COLOUR,
    RECOVERY_COLOUR,
    WITHIN_SIX,
    recovery_chart,
)
from ehr_bridge.reports.outcomes import OutcomeCounts
from ehr_bridge.reports.waits import WaitsReport

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
SCRIPT = SCRIPTS / "render-report.py"
LAYOUT = SCRIPTS / "check-report-layout.py"
GENERATED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)


@pytest.fixture(scope="module")
def page(cohort_episodes, options) -> str:
    return render_page([build_reports("cohort", cohort_episodes, options)], GENERATED)


def test_page_fetches_nothing(page):
    parsed = _Collect()
    parsed.feed(page)
    assert not {"script", "link", "img", "iframe", "object", "embed"} & set(parsed.tags)
    for name, value in parsed.attrs:
        assert name not in {"src", "href", "srcset"}, name
        assert "://" not in (value or "") or name == "content", (name, value)
    assert "default-src 'none'" in page
    assert "url(" not in page and "@import" not in page


def test_page_has_the_four_charts_and_their_data(page):
    for chart in ("recovery", "waits", "hours", "weekdays"):
        assert f'<figure id="chart-cohort-{chart}">' in page
    assert page.count("<svg ") == 4
    assert RECOVERY_COLOUR in page and WITHIN_SIX in page and OUT_OF_HOURS_COLOUR in page
    assert "50% national standard" in page and "37.5%" in page and "21.5" in page


def test_values_from_data_are_escaped(cohort_episodes, options):
    hostile = '<script>alert("x")</script>'
    first = cohort_episodes[0]
    sessions = tuple(replace(s, therapist=hostile) for s in first.sessions)
    episodes = [replace(first, sessions=sessions), *cohort_episodes[1:]]
    html = render_page([build_reports("cohort", episodes, options)], GENERATED)
    assert hostile not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


def test_only_the_named_sections(cohort_episodes, options):
    html = render_page([build_reports("cohort", cohort_episodes, options)], GENERATED, ["waits"])
    assert "chart-cohort-waits" in html and "chart-cohort-recovery" not in html


def _chromium() -> str | None:
    return next(
        (
            found
            for n in ("chromium", "chromium-browser", "google-chrome")
            if (found := shutil.which(n))
        ),
        None,
    )


def _script(path: Path = SCRIPT):
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: CI sets this after installing Chromium: there, a missing browser is a failure, not a skip
_REQUIRED = os.environ.get("EHR_BRIDGE_REQUIRE_CHROMIUM") == "1"


@pytest.mark.skipif(
    _chromium() is None and not _REQUIRED, reason="needs Chromium (apt-get install chromium)"
)
def test_chromium_renders_the_chart_offline(tmp_path, page):
    assert _chromium() is not None, "CI requires Chromium (Debian package chromium)"
    report = tmp_path / "report.html"
    report.write_text(page, encoding="utf-8")
    out = tmp_path / "hours.png"
    command = [sys.executable, str(SCRIPT), str(report), str(out), "--chart", "hours"]
    done = subprocess.run(
        [*command, "--check", OUT_OF_HOURS_COLOUR],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-1500:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    script = _script()
    # the out-of-hours bars (7 of them) are drawn; a colour the page never uses is not
    assert script.count_colour(out, OUT_OF_HOURS_COLOUR) > 1000
    assert script.count_colour(out, OFFICE_HOURS_COLOUR) > 1000
    assert script.count_colour(out, "123456") == 0


def test_count_charts_use_whole_number_gridlines():
    chart = svg.Chart(
        "c", "t", "sessions", [svg.Bar("a", 0, "#000000"), svg.Bar("b", 1, "#000000")]
    )
    rendered = svg.render(chart)
    assert ">0.5<" not in rendered and ">1<" in rendered and ">2<" in rendered


def _month(rate: tuple[int, int] | None) -> OutcomeCounts:
    """A month's counts with recovery ``count`` of ``denominator`` (None: nobody finished)."""
    if rate is None:
        return OutcomeCounts()
    count, denominator = rate
    return OutcomeCounts(finished=denominator, at_caseness=denominator, recovered=count)


def _hard(reports, name: str, rates: list[tuple[int, int] | None]):
    """The cohort's reports with outcomes by month as given, and crowded waits and hours."""
    months = tuple(
        (f"2025-{i % 12 + 1:02d}" if i < 12 else f"2026-{i % 12 + 1:02d}", _month(r))
        for i, r in enumerate(rates)
    )
    outcomes = replace(reports.outcomes, monthly=months)
    waits = WaitsReport(reports.waits.period, "finished", (40, 41, 42, 42, 43, 125, 126, 127) * 9)
    hours = [30 if h in (8, 9, 16, 17) else 2 * h for h in range(24)]
    activity = ActivityReport(
        reports.activity.period,
        attended=sum(hours),
        by_hour=hours,
        by_hour_outside=[0 if 9 <= h < 17 else n for h, n in enumerate(hours)],
        by_weekday=[40, 0, 1, 39, 40, 40, 0],
    )
    return replace(reports, connection=name, outcomes=outcomes, waits=waits, activity=activity)


#: recovery rates either side of the 50% line (3 of 7 was once drawn on it), full and empty
NEAR_THE_LINE = [(3, 7), (4, 9), (49, 100), (1, 2), (51, 100), (5, 9), (7, 7), (0, 3), None]
A_YEAR = [(i % 8, 8) for i in range(11)] + [(10, 12)]
TWO_YEARS = [(i % 5 + 3, 10) if i % 4 else None for i in range(24)]


def test_a_label_that_would_cross_the_line_goes_above_it(cohort_episodes, options):
    reports = build_reports("cohort", cohort_episodes, options)
    chart = recovery_chart("c", _hard(reports, "c", [(3, 7)]).outcomes)
    rendered = svg.render(chart)
    line_y = float(rendered.split('class="rule"')[1].split('y1="')[1].split('"')[0])
    label_y = float(rendered.split(">3 of 7<")[0].rsplit('y="', 1)[1].split('"')[0])
    assert label_y + 0.25 * svg.ABOVE_SIZE < line_y - 1  # the label's box ends above the line
    assert "national standard" not in rendered.split("<line")[0]  # not beside the line: a legend


def test_labels_that_cannot_fit_are_left_out_or_thinned(cohort_episodes, options):
    reports = build_reports("cohort", cohort_episodes, options)
    rendered = svg.render(recovery_chart("c", _hard(reports, "c", TWO_YEARS).outcomes))
    shown = [m for m in ("2025-01", "2025-02", "2025-03", "2025-04") if f">{m}<" in rendered]
    assert shown and len(shown) < 4  # every second (or third) month is named
    assert " of 10<" not in rendered  # 24 bars leave no room above them: the table has them


def _layout(page_html: str, tmp_path: Path) -> dict:
    page = tmp_path / "report.html"
    page.write_text(page_html, encoding="utf-8")
    script = _script(LAYOUT)
    result = script.measure(_chromium() or "chromium", page)
    return {**result, "findings": script.findings(result)}


_chromium_only = pytest.mark.skipif(
    _chromium() is None and not _REQUIRED, reason="needs Chromium (apt-get install chromium)"
)


@_chromium_only
def test_chromium_lays_the_page_out_with_no_label_on_another(tmp_path, cohort_episodes, options):
    assert _chromium() is not None, "CI requires Chromium (Debian package chromium)"
    reports = build_reports("cohort", cohort_episodes, options)
    pages = [
        reports,
        _hard(reports, "near-line", NEAR_THE_LINE),
        _hard(reports, "a-year", A_YEAR),
        _hard(reports, "two-years", TWO_YEARS),
    ]
    result = _layout(render_page(pages, GENERATED), tmp_path)
    assert result["findings"] == []
    assert len(result["charts"]) == 16 and all(c["labels"] > 5 for c in result["charts"])
    assert sum(c["rules"] for c in result["charts"]) == 4 * 3  # the 50% line, 6 and 18 weeks
    for connection in result["connections"]:
        assert connection["headline_visible"] and len(connection["headline"]) == 4
        assert connection["headings"] == [
            "Headline",
            "Outcomes",
            "Waiting times",
            "Activity",
            "Governance phrases",
            "Risk events",
        ]
        assert len(connection["figures"]) == 4
    assert {"caseness", "paired scores", "ADSM", "reliable improvement"} <= set(result["glossary"])


BAD_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}"></head><body>
<section id="connection-bad"><h1>bad</h1>
<table><thead><tr><th></th><th>notes</th><th>notes</th></tr></thead></table>
<figure id="chart-bad-recovery"><svg viewBox="0 0 300 200" width="300" height="200">
<rect class="bar" x="40" y="110" width="40" height="80" fill="#1d6996"/>
<line class="rule" x1="20" x2="280" y1="100" y2="100" stroke="#b2182b"/>
<text x="60" y="104" text-anchor="middle">3/7</text>
<text x="62" y="106" text-anchor="middle">2 of 3</text>
<text x="60" y="130" text-anchor="middle">on the bar</text>
<text x="296" y="20">cut off</text>
</svg></figure></section></body></html>"""


@_chromium_only
def test_the_layout_check_fails_a_page_drawn_wrong(tmp_path):
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    result = _layout(BAD_PAGE.format(csp=csp), tmp_path)
    found = "\n".join(result["findings"])
    assert "label '3/7' overlaps a line" in found
    assert "label '3/7' overlaps label 2 of 3" in found
    assert "label 'on the bar' overlaps a bar" in found
    assert "label 'cut off' is outside the chart" in found
    assert "1 column(s) without a heading" in found and "repeated heading(s) ['notes']" in found
    assert "connection-bad: no headline" in found and "no glossary" in found
