"""Outcome, waiting-time, activity and governance reports on the data ehr-bridge carries.

A service commissions an online provider for shorter waits, out-of-hours capacity and good
outcomes; every session, score and note that shows it passes through here. The reports use
the national NHS Talking Therapies definitions (``docs/reports.md``) so a service manager
can trust the figures without a spreadsheet.

Layers: ``model`` (the FHIR-free read model), ``load`` (store -> model, one referral at a
time, notes reduced to phrase counts), pure functions per report (``outcomes``, ``waits``,
``activity``, ``governance``), ``risks`` (the governance report's risk section, summed
from the store's risk events, counts and times only), ``build`` (all four for a
connection) and outputs (``text`` tables, ``export`` JSON/CSV, ``html`` page with ``svg``
charts), both opening with a ``headline`` per connection (each figure against its national
standard); the page ends with a ``glossary`` of its terms. ``times`` reads every FHIR
date/time form into an aware instant; ``quality`` counts what could not be read.
"""

from ehr_bridge.reports.activity import ActivityReport, activity_report
from ehr_bridge.reports.build import (
    ConnectionReports,
    ReportOptions,
    build_reports,
    options_from_config,
    protocols_from_config,
    reports_from_store,
)
from ehr_bridge.reports.export import CSV_COLUMNS, REPORTS, csv_rows, report_json
from ehr_bridge.reports.governance import (
    GovernanceReport,
    Protocol,
    count_phrases,
    governance_report,
)
from ehr_bridge.reports.html import render_page
from ehr_bridge.reports.load import episode_from_resources, load_episodes
from ehr_bridge.reports.model import Episode, Period, Rate, Score, Session, Unreadable
from ehr_bridge.reports.outcomes import (
    EpisodeOutcome,
    OutcomeCounts,
    OutcomesReport,
    episode_outcome,
    outcomes_report,
)
from ehr_bridge.reports.quality import DataQuality, data_quality
from ehr_bridge.reports.risks import RiskReport, risk_report
from ehr_bridge.reports.text import print_headline, print_report, summary_lines
from ehr_bridge.reports.times import When, read_when
from ehr_bridge.reports.waits import WaitsReport, wait_days, waits_report

__all__ = [
    "CSV_COLUMNS",
    "REPORTS",
    "ActivityReport",
    "ConnectionReports",
    "DataQuality",
    "Episode",
    "EpisodeOutcome",
    "GovernanceReport",
    "OutcomeCounts",
    "OutcomesReport",
    "Period",
    "Protocol",
    "Rate",
    "ReportOptions",
    "RiskReport",
    "Score",
    "Session",
    "Unreadable",
    "WaitsReport",
    "When",
    "activity_report",
    "build_reports",
    "count_phrases",
    "csv_rows",
    "data_quality",
    "episode_from_resources",
    "episode_outcome",
    "governance_report",
    "load_episodes",
    "options_from_config",
    "outcomes_report",
    "print_headline",
    "print_report",
    "protocols_from_config",
    "read_when",
    "render_page",
    "report_json",
    "reports_from_store",
    "risk_report",
    "summary_lines",
    "wait_days",
    "waits_report",
]
