"""Risk events in the governance report: how many, and how fast the trust saw them.

The safety case (docs/clinical-safety.md, H9) rests on every risk the provider raises
reaching the trust's duty team quickly and being acknowledged there. The store follows
each risk (``Store.risks``); this section sums them for the service's governance review:
what was raised, what could not be written, how long delivery and acknowledgement took,
and what is still open, or open past the connection's acknowledgement window, now.
It keeps counts, codes (level, reason) and durations only: never the referral, the
trust's referral id, the trust's item id or who acknowledged, so nothing printed or
exported identifies a patient or a member of staff.

A risk belongs to the period by the Europe/London day ehr-bridge recorded it
(``created_at``), and every figure, including "open now", is over the risks of the
period. Times run from ``created_at`` too, not from the provider's ``raised_at``: that is
when ehr-bridge could first act, and both ends are then on our clock. The one exception
is the trust's own acknowledgement time: a trust clock behind ours could put it before
``created_at``, and such a wait counts as zero rather than as a negative time.

Medians are ``statistics.median``, as in the waits report; the 90th percentile uses the
same convention (``statistics.quantiles``, ``inclusive``: linear between the two nearest
ranks, whose 50th percentile is exactly that median).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ehr_bridge.config import RiskConfig
from ehr_bridge.domain.risk import LEVELS, REASONS
from ehr_bridge.reports.model import Period
from ehr_bridge.reports.times import LONDON
from ehr_bridge.store import RiskView, utcnow

#: the window a report uses without its connection's config (the config's own default)
DEFAULT_ACKNOWLEDGE_MINUTES = RiskConfig().acknowledge_within_minutes
#: why a risk could not be written, in the order the escalation judges them
UNWRITTEN_CAUSES = ("quarantined", "no_write_back", "dead_lettered", "cancelled")
_CAUSE_LABELS = {
    "quarantined": "bundle quarantined",
    "no_write_back": "no write-back (trust takes no risk items)",
    "dead_lettered": "dead-lettered",
    "cancelled": "cancelled",
}


def percentile(values: Sequence[float], share: float) -> float | None:
    """The ``share`` (0 to 1) percentile of ``values``, linear between ranks; None if empty.

    Rank ``share * (n - 1)`` of the sorted values, interpolated: the ``inclusive`` method
    of ``statistics.quantiles``, whose 50th percentile is ``statistics.median``, so the
    median and the 90th percentile of one figure follow one convention.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = share * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


@dataclass(frozen=True)
class Durations:
    """Seconds from ``created_at`` to an event, one per risk that reached it, sorted."""

    seconds: tuple[float, ...] = ()

    @property
    def count(self) -> int:
        """How many risks reached the event."""
        return len(self.seconds)

    @property
    def median(self) -> float | None:
        """Median seconds (a half-way value when the middle falls between two)."""
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def p90(self) -> float | None:
        """90th percentile in seconds, same convention as the median."""
        return percentile(self.seconds, 0.9)


@dataclass(frozen=True)
class RiskReport:
    """The risks of one connection raised in the period, and where they stand ``as_of``."""

    period: Period = field(default_factory=Period)
    as_of: datetime = field(default_factory=utcnow)
    acknowledge_within_minutes: float = DEFAULT_ACKNOWLEDGE_MINUTES
    #: level code -> risks, every known level (zeros included) then any other in order
    by_level: tuple[tuple[str, int], ...] = tuple((level, 0) for level in LEVELS)
    #: reason code -> risks, every known reason (zeros included) then any other in order
    by_reason: tuple[tuple[str, int], ...] = tuple((reason, 0) for reason in REASONS)
    from_quarantine: int = 0
    #: cause -> risks that cannot reach the trust as things stand (``UNWRITTEN_CAUSES``)
    not_written: tuple[tuple[str, int], ...] = tuple((cause, 0) for cause in UNWRITTEN_CAUSES)
    delivered: Durations = field(default_factory=Durations)
    acknowledged: Durations = field(default_factory=Durations)
    resolved: int = 0
    open: int = 0
    overdue: int = 0
    alerts_sent: int = 0

    @property
    def raised(self) -> int:
        """Risks raised in the period."""
        return sum(count for _, count in self.by_level)

    @property
    def not_written_total(self) -> int:
        """Risks that cannot be written, whatever the cause (quarantined ones included)."""
        return sum(count for _, count in self.not_written)


def unwritten_cause(view: RiskView) -> str | None:
    """Why this risk cannot reach the trust as things stand, or None while it can.

    The same judgement as ``RiskView.failed``, split by cause: a refused bundle, a trust
    adapter that takes no risk items (nothing queued), a dead letter, a cancelled item.
    """
    if view.origin != "session":
        return "quarantined"
    if view.outbox_state is None:
        return "no_write_back"
    if view.outbox_state == "dead":
        return "dead_lettered"
    if view.outbox_state == "cancelled":
        return "cancelled"
    return None


def risk_report(
    views: Iterable[RiskView],
    period: Period,
    acknowledge_within_minutes: float = DEFAULT_ACKNOWLEDGE_MINUTES,
    as_of: datetime | None = None,
) -> RiskReport:
    """Counts and times of the risks whose ``created_at`` day (UK time) is in ``period``."""
    now = as_of or utcnow()
    window = timedelta(minutes=acknowledge_within_minutes)
    chosen = [v for v in views if v.created_at.astimezone(LONDON).date() in period]
    delivered = [_seconds(v.created_at, at) for v in chosen if (at := v.delivered_at)]
    acknowledged = [_seconds(v.created_at, at) for v in chosen if (at := v.acknowledged_at)]
    causes = Counter(cause for v in chosen if (cause := unwritten_cause(v)) is not None)
    return RiskReport(
        period=period,
        as_of=now,
        acknowledge_within_minutes=acknowledge_within_minutes,
        by_level=_counted(LEVELS, (v.level for v in chosen)),
        by_reason=_counted(REASONS, (v.reason for v in chosen)),
        from_quarantine=sum(v.origin == "quarantine" for v in chosen),
        not_written=_counted(UNWRITTEN_CAUSES, causes.elements()),
        delivered=Durations(tuple(sorted(delivered))),
        acknowledged=Durations(tuple(sorted(acknowledged))),
        resolved=sum(v.resolved_at is not None for v in chosen),
        open=sum(v.open for v in chosen),
        overdue=sum(v.open and now - v.created_at >= window for v in chosen),
        alerts_sent=sum(v.alerts_sent for v in chosen),
    )


def _seconds(start: datetime, end: datetime) -> float:
    """Seconds from ``start`` to ``end``; never below zero (a trust clock behind ours)."""
    return max(0.0, (end - start).total_seconds())


def _counted(known: Sequence[str], codes: Iterable[str]) -> tuple[tuple[str, int], ...]:
    """Counts of every known code in order (zeros kept), then any other code, sorted."""
    counts = Counter(codes)
    others = sorted(set(counts) - set(known))
    return tuple((code, counts.get(code, 0)) for code in (*known, *others))


def duration_label(seconds: float | None) -> str:
    """``45 s`` under a minute, ``6.8 min`` from a minute, ``n/a`` for no risk."""
    if seconds is None:
        return "n/a"
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def risk_lines(report: RiskReport) -> list[tuple[str, int, str, str]]:
    """(label, count, median, 90th percentile) per line of the risk table, text and HTML."""
    lines = [("raised", report.raised, "", "")]
    lines += [(f"  level {code}", n, "", "") for code, n in report.by_level]
    lines += [(f"  reason {code}", n, "", "") for code, n in report.by_reason]
    lines.append(("from quarantined bundles", report.from_quarantine, "", ""))
    lines.append(("could not be written", report.not_written_total, "", ""))
    lines += [(f"  {_CAUSE_LABELS.get(c, c)}", n, "", "") for c, n in report.not_written]
    for label, durations in (
        ("delivered to the trust", report.delivered),
        ("acknowledged at the trust", report.acknowledged),
    ):
        median, p90 = duration_label(durations.median), duration_label(durations.p90)
        lines.append((label, durations.count, median, p90))
    window = f"{report.acknowledge_within_minutes:g}"
    lines += [
        ("resolved by an operator", report.resolved, "", ""),
        ("open now", report.open, "", ""),
        (f"open past {window} minutes (overdue)", report.overdue, "", ""),
        ("alerts sent", report.alerts_sent, "", ""),
    ]
    return lines
