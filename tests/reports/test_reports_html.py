"""The HTML page: self-contained, escaped, and (where Chromium exists) really rendered.

The static checks run everywhere. The render check needs Chromium, which CI images and
new machines may not have, so it skips without it; ``scripts/render-report.py`` is the
documented way to run the same check by hand (docs/reports.md).
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
from ehr_bridge.reports.html import (
    OFFICE_HOURS_COLOUR,
    OUT_OF_HOURS_COLOUR,
    RECOVERY_COLOUR,
    WITHIN_SIX,
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "render-report.py"
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
    assert "national target 50%" in page and "37.5%" in page and "21.5" in page


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


def _script():
    spec = importlib.util.spec_from_file_location("render_report", SCRIPT)
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
