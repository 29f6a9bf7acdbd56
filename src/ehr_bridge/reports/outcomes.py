"""Clinical outcomes with the national NHS Talking Therapies definitions.

For each referral that finished a course of treatment (ended with at least two attended
treatment sessions) in the period, the first and last scores of the depression measure
(PHQ-9) and of the anxiety measure decide the outcome. The anxiety measure is the
anxiety-disorder-specific measure (ADSM) the catalogue pairs with the provisional diagnosis
(``Measure.problems``: SPIN for F40.1, PDSS for F41.0, ...), when that row is enabled and
the referral has a pair of its scores; otherwise GAD-7, the national back-up "if the
recommended measure is missing" (Clark et al. 2018, Table 2). Where two ADSMs share a
diagnosis (IES-R and PCL-5 for PTSD) the first in catalogue order that has a pair is used.
Then:

- at caseness at start: first PHQ-9 >= 10 or first anxiety score at its cut-off
  (``Measure.at_caseness``: ``>=``, or ``>`` for the Mobility Inventory's 2.3);
- recovery: at caseness at start and below both cut-offs at the last scores;
- reliable improvement: a reliable decrease on at least one measure and no reliable
  increase on the other; reliable deterioration: a reliable increase on either;
- reliable recovery: recovery and reliable improvement.

Denominators are the national ones: recovery and reliable recovery over finished minus
not at caseness; improvement and deterioration over all finished. A finished referral
without a pair of scores on both measures gets no outcome flags and is not counted as
"not at caseness", so missing scores can never raise a rate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from ehr_bridge.domain.measures import Measure
from ehr_bridge.reports.model import Episode, Period, Rate

DEPRESSION_MEASURE = "phq9"
DEFAULT_ANXIETY_MEASURE = "gad7"
#: the national ambition for the recovery rate
RECOVERY_TARGET = 0.5


@dataclass(frozen=True)
class Pair:
    """First and last total of one measure within a referral."""

    measure: Measure
    first: float
    last: float

    @property
    def change(self) -> float:
        """Last minus first: negative is better on every measure we use.

        Worked in decimal, so a Mobility Inventory change of 3.1 -> 2.37 is exactly -0.73
        (binary floats make it -0.7300000000000004, one side of the RCI or the other).
        """
        return float(Decimal(str(self.last)) - Decimal(str(self.first)))


@dataclass(frozen=True)
class EpisodeOutcome:
    """The national flags for one referral (all False when there is no pair)."""

    finished: bool
    paired: bool
    at_caseness: bool
    not_at_caseness: bool
    recovered: bool
    improved: bool
    deteriorated: bool
    anxiety_measure: str | None = None

    @property
    def reliably_recovered(self) -> bool:
        """Recovery and reliable improvement together."""
        return self.recovered and self.improved


def pair_of(episode: Episode, measure: Measure) -> Pair | None:
    """The first and last score of ``measure`` by completion time; None with fewer than two."""
    scores = sorted((s for s in episode.scores if s.measure == measure.key), key=lambda s: s.at)
    if len(scores) < 2:
        return None
    return Pair(measure=measure, first=scores[0].value, last=scores[-1].value)


def adsms_for(problem: str | None, table: Mapping[str, Measure]) -> list[Measure]:
    """The enabled ADSMs for a provisional diagnosis (data-set form), in catalogue order."""
    if not problem:
        return []
    return [
        m
        for m in table.values()
        if m.enabled and m.role == "anxiety" and any(problem.startswith(p) for p in m.problems)
    ]


def anxiety_measure(episode: Episode, table: Mapping[str, Measure]) -> Measure:
    """The first enabled ADSM for the diagnosis with a pair of scores, else GAD-7."""
    for measure in adsms_for(episode.problem_code(), table):
        if pair_of(episode, measure) is not None:
            return measure
    return table[DEFAULT_ANXIETY_MEASURE]


def episode_outcome(episode: Episode, table: Mapping[str, Measure]) -> EpisodeOutcome:
    """The outcome flags for one referral, on its first and last paired scores."""
    finished = episode.finished_treatment
    anxiety = anxiety_measure(episode, table)
    depression = pair_of(episode, table[DEPRESSION_MEASURE])
    anxious = pair_of(episode, anxiety)
    if depression is None or anxious is None:
        return EpisodeOutcome(finished, False, False, False, False, False, False, anxiety.key)
    pairs = (depression, anxious)
    at_caseness = any(p.measure.at_caseness(p.first) for p in pairs)
    below_at_end = not any(p.measure.at_caseness(p.last) for p in pairs)
    worse = any(p.measure.reliable_increase(p.change) for p in pairs)
    better = any(p.measure.reliable_decrease(p.change) for p in pairs)
    return EpisodeOutcome(
        finished=finished,
        paired=True,
        at_caseness=at_caseness,
        not_at_caseness=not at_caseness,
        recovered=at_caseness and below_at_end,
        improved=better and not worse,
        deteriorated=worse,
        anxiety_measure=anxiety.key,
    )


@dataclass(frozen=True)
class OutcomeCounts:
    """Tallies over a set of finished referrals, and the national rates from them."""

    finished: int = 0
    paired: int = 0
    at_caseness: int = 0
    not_at_caseness: int = 0
    recovered: int = 0
    improved: int = 0
    deteriorated: int = 0
    reliably_recovered: int = 0

    def add(self, outcome: EpisodeOutcome) -> OutcomeCounts:
        """These counts with one more finished referral."""
        return OutcomeCounts(
            finished=self.finished + 1,
            paired=self.paired + outcome.paired,
            at_caseness=self.at_caseness + outcome.at_caseness,
            not_at_caseness=self.not_at_caseness + outcome.not_at_caseness,
            recovered=self.recovered + outcome.recovered,
            improved=self.improved + outcome.improved,
            deteriorated=self.deteriorated + outcome.deteriorated,
            reliably_recovered=self.reliably_recovered + outcome.reliably_recovered,
        )

    @property
    def recovery_denominator(self) -> int:
        """Finished minus not at caseness at start (national)."""
        return self.finished - self.not_at_caseness

    @property
    def recovery(self) -> Rate:
        """Moved to recovery."""
        return Rate(self.recovered, self.recovery_denominator)

    @property
    def reliable_recovery(self) -> Rate:
        """Recovery and reliable improvement, over the recovery denominator."""
        return Rate(self.reliably_recovered, self.recovery_denominator)

    @property
    def reliable_improvement(self) -> Rate:
        """Reliable improvement over all finished."""
        return Rate(self.improved, self.finished)

    @property
    def reliable_deterioration(self) -> Rate:
        """Reliable deterioration over all finished."""
        return Rate(self.deteriorated, self.finished)

    @property
    def with_paired_scores(self) -> Rate:
        """Finished referrals with a pair on both measures (a data-quality figure)."""
        return Rate(self.paired, self.finished)

    @property
    def caseness_at_start(self) -> Rate:
        """At caseness at start, over all finished."""
        return Rate(self.at_caseness, self.finished)


@dataclass(frozen=True)
class OutcomesReport:
    """Outcomes for the period, and per calendar month of the referral's end."""

    period: Period
    measures_version: str
    adsm_enabled: bool
    total: OutcomeCounts
    monthly: tuple[tuple[str, OutcomeCounts], ...]


def month_of(day: date) -> str:
    """``YYYY-MM``."""
    return f"{day.year:04d}-{day.month:02d}"


def months_between(first: date, last: date) -> list[str]:
    """Every ``YYYY-MM`` from ``first`` to ``last`` inclusive, so empty months show."""
    months, year, month = [], first.year, first.month
    while (year, month) <= (last.year, last.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def outcomes_report(
    episodes: Iterable[Episode],
    period: Period,
    table: Mapping[str, Measure],
    *,
    measures_version: str,
    adsm_enabled: bool = False,
) -> OutcomesReport:
    """Outcomes of the referrals that finished treatment with an end date in ``period``."""
    total = OutcomeCounts()
    by_month: dict[str, OutcomeCounts] = defaultdict(OutcomeCounts)
    ends: list[date] = []
    for episode in episodes:
        if episode.ended is None or episode.ended not in period:
            continue
        if not episode.finished_treatment:
            continue
        outcome = episode_outcome(episode, table)
        total = total.add(outcome)
        month = month_of(episode.ended)
        by_month[month] = by_month[month].add(outcome)
        ends.append(episode.ended)
    monthly = _monthly(by_month, period, ends)
    return OutcomesReport(period, measures_version, adsm_enabled, total, monthly)


def _monthly(
    by_month: Mapping[str, OutcomeCounts], period: Period, ends: list[date]
) -> tuple[tuple[str, OutcomeCounts], ...]:
    """Month rows across the period (or across the data when the period is open)."""
    first = period.first or (min(ends) if ends else None)
    last = period.last or (max(ends) if ends else None)
    if first is None or last is None:
        return ()
    return tuple((m, by_month.get(m, OutcomeCounts())) for m in months_between(first, last))
