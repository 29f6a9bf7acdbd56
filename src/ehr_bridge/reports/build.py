"""All four reports for one connection, from the store or from any episodes.

The CLI, the demo summary and the HTML page all come through ``build_reports`` so they
can never disagree. Episodes are loaded once per connection and kept in memory for the four
passes; they hold dates, codes, totals and phrase counts only (no notes), a few hundred
bytes per referral. The governance report's risk section (``reports.risks``) is not a
function of episodes: it sums the store's risk events, judged against the connection's
own acknowledgement window, so ``reports_from_store`` takes the connection's risk config.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from ehr_bridge.config import ReportsConfig, RiskConfig
from ehr_bridge.domain.measures import MEASURES_VERSION, measure_table
from ehr_bridge.reports.activity import ActivityReport, activity_report
from ehr_bridge.reports.governance import (
    GovernanceReport,
    Protocol,
    all_phrases,
    governance_report,
)
from ehr_bridge.reports.load import load_episodes
from ehr_bridge.reports.model import Episode, Period, Unreadable
from ehr_bridge.reports.outcomes import OutcomesReport, outcomes_report
from ehr_bridge.reports.quality import DataQuality, data_quality
from ehr_bridge.reports.risks import RiskReport, risk_report
from ehr_bridge.reports.waits import Cohort, WaitsReport, waits_report
from ehr_bridge.store import Store


@dataclass(frozen=True)
class ReportOptions:
    """What to report on: the period, the ADSM switch, phrase lists, the waits cohort."""

    period: Period = field(default_factory=Period)
    adsm_enabled: bool = False
    protocols: tuple[Protocol, ...] = ()
    cohort: Cohort = "finished"


@dataclass(frozen=True)
class ConnectionReports:
    """The four reports of one connection (``risks``: the governance report's risk section)."""

    connection: str
    outcomes: OutcomesReport
    waits: WaitsReport
    activity: ActivityReport
    governance: GovernanceReport
    data_quality: DataQuality = field(default_factory=DataQuality)
    risks: RiskReport = field(default_factory=RiskReport)


def protocols_from_config(config: ReportsConfig) -> tuple[Protocol, ...]:
    """The configured phrase lists as Protocols, in the file's order."""
    return tuple(
        Protocol(
            name=name,
            phrases=tuple(phrases),
            problems=tuple(config.protocol_problems.get(name, ())),
        )
        for name, phrases in config.phrases.items()
    )


def options_from_config(
    config: ReportsConfig, period: Period | None = None, cohort: Cohort = "finished"
) -> ReportOptions:
    """Report options from the ``[reports]`` section plus the command line's choices."""
    return ReportOptions(
        period=period or Period(),
        adsm_enabled=config.adsm_enabled,
        protocols=protocols_from_config(config),
        cohort=cohort,
    )


def build_reports(
    connection: str,
    episodes: Iterable[Episode],
    options: ReportOptions,
    skipped: Iterable[Unreadable] = (),
    risks: RiskReport | None = None,
) -> ConnectionReports:
    """Outcomes, waits, activity and governance over the same episodes, and data quality.

    ``skipped`` names referrals the loader could not make an Episode of; ``risks`` is the
    risk section (none raised when not given: episodes alone cannot tell).
    """
    held = list(episodes)
    table = measure_table(adsm_enabled=options.adsm_enabled)
    return ConnectionReports(
        connection=connection,
        outcomes=outcomes_report(
            held,
            options.period,
            table,
            measures_version=MEASURES_VERSION,
            adsm_enabled=options.adsm_enabled,
        ),
        waits=waits_report(held, options.period, options.cohort),
        activity=activity_report(held, options.period),
        governance=governance_report(held, options.period, options.protocols),
        data_quality=data_quality(held, skipped),
        risks=risks if risks is not None else RiskReport(period=options.period),
    )


def reports_from_store(
    store: Store,
    connection: str,
    options: ReportOptions,
    *,
    risk: RiskConfig | None = None,
    now: datetime | None = None,
) -> ConnectionReports:
    """Load a connection's episodes (counting the options' phrases) and build the reports.

    ``risk`` is the connection's ``[connection.risk]`` section (its acknowledgement window
    decides what is overdue; the config's default without one); ``now`` is the moment
    "open now" is judged at, the current time unless given.
    """
    phrases = all_phrases(options.protocols)
    skipped: list[Unreadable] = []
    episodes = list(load_episodes(store, connection, phrases, skipped))
    window = (risk or RiskConfig()).acknowledge_within_minutes
    risks = risk_report(store.risks(connection), options.period, window, now)
    return build_reports(connection, episodes, options, skipped, risks)
