"""The glossary at the end of the HTML page: the report's terms in plain words.

A service manager may not know caseness, paired scores or ADSMs. Each term is defined as
docs/reports.md defines it, in a sentence or two, and its numbers (cut-offs, reliable
changes, standards, days) are read from the same constants the figures use, so the page
cannot say one thing and count another. The page lists the terms of the reports it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ehr_bridge.domain.measures import MEASURES
from ehr_bridge.reports.model import OFFICE_CLOSES, OFFICE_OPENS
from ehr_bridge.reports.outcomes import RECOVERY_TARGET
from ehr_bridge.reports.risks import DEFAULT_ACKNOWLEDGE_MINUTES
from ehr_bridge.reports.waits import (
    EIGHTEEN_WEEK_STANDARD,
    EIGHTEEN_WEEKS,
    SIX_WEEK_STANDARD,
    SIX_WEEKS,
)


@dataclass(frozen=True)
class Term:
    """One glossary entry and the reports that use the term."""

    term: str
    definition: str
    reports: tuple[str, ...]

    @property
    def anchor(self) -> str:
        """The entry's id on the page (``term-caseness``)."""
        words = "".join(c if c.isalnum() else "-" for c in self.term.lower())
        return "term-" + "-".join(w for w in words.split("-") if w)


def _terms() -> tuple[Term, ...]:
    phq9, gad7 = MEASURES["phq9"], MEASURES["gad7"]
    cut_offs = f"{phq9.name} {phq9.caseness:g} or more, {gad7.name} {gad7.caseness:g} or more"
    changes = f"{phq9.name} by {phq9.reliable_change:g} or more, {gad7.name} by"
    changes += f" {gad7.reliable_change:g} or more"
    opens, closes = OFFICE_OPENS.strftime("%H:%M"), OFFICE_CLOSES.strftime("%H:%M")
    return (
        Term(
            "finished a course of treatment",
            "The referral ended in the period (the provider's end-of-care date) after at least"
            " 2 attended treatment sessions. Every outcome figure counts these referrals.",
            ("outcomes", "waits", "activity"),
        ),
        Term(
            "paired scores",
            f"At least two scores on {phq9.name} and at least two on the anxiety measure, so"
            " the first and the last can be compared. A finished referral without them gets"
            " no outcome, but stays in the recovery denominator.",
            ("outcomes",),
        ),
        Term(
            "caseness",
            f"A score at or above the measure's clinical cut-off ({cut_offs}): the level"
            " at which a person counts as a clinical case. At caseness at start: the first"
            f" {phq9.name} or the first anxiety score was at caseness.",
            ("outcomes",),
        ),
        Term(
            "recovery",
            "At caseness at start, and the last scores on both measures below their cut-offs."
            " The rate is over those who finished, less those not at caseness at start. The"
            f" national standard is {RECOVERY_TARGET:.0%}.",
            ("outcomes",),
        ),
        Term(
            "reliable change",
            "A change in a score bigger than the measure's measurement error (the reliable"
            f" change index): {changes}.",
            ("outcomes",),
        ),
        Term(
            "reliable improvement",
            "A reliable fall on at least one measure and no reliable rise on the other.",
            ("outcomes",),
        ),
        Term(
            "reliable deterioration",
            "A reliable rise on either measure.",
            ("outcomes",),
        ),
        Term(
            "reliable recovery",
            "Recovery and reliable improvement together.",
            ("outcomes",),
        ),
        Term(
            f"{phq9.name} and {gad7.name}",
            f"The depression ({phq9.name}, {phq9.total_min:g}-{phq9.total_max:g}) and anxiety"
            f" ({gad7.name}, {gad7.total_min:g}-{gad7.total_max:g}) questionnaires scored"
            " during treatment; higher is worse.",
            ("outcomes",),
        ),
        Term(
            "ADSM",
            "Anxiety disorder specific measure: a questionnaire for one anxiety problem (PDSS"
            " for panic disorder, SPIN for social anxiety, IES-R for PTSD, for example). When"
            " the service turns ADSMs on and a referral has a pair of its scores, it is the"
            f" anxiety measure instead of {gad7.name}. Off by default: their cut-offs are not"
            " yet confirmed.",
            ("outcomes",),
        ),
        Term(
            "wait",
            "Whole days from the day the trust received the referral to the first attended"
            " treatment session (not an assessment, a missed or a cancelled appointment)."
            f" Standards: {SIX_WEEK_STANDARD:.0%} within 6 weeks ({SIX_WEEKS} days) and"
            f" {EIGHTEEN_WEEK_STANDARD:.0%} within 18 weeks ({EIGHTEEN_WEEKS} days); exactly"
            f" {SIX_WEEKS} or {EIGHTEEN_WEEKS} days counts as within.",
            ("waits",),
        ),
        Term(
            "cohort",
            "Which referrals the waits count. Finished: those that finished a course of"
            " treatment in the period (the national measure). Started: those whose first"
            " treatment session was in the period.",
            ("waits",),
        ),
        Term(
            "did not attend (DNA)",
            "An appointment the person missed without telling the service, over all appointments.",
            ("activity",),
        ),
        Term(
            "outside office hours",
            f"An attended session starting before {opens}, from {closes}, or at the weekend,"
            " UK time. Bank holidays count as weekdays.",
            ("activity",),
        ),
        Term(
            "treatment session",
            "An attended session of a treatment type; an assessment is not one.",
            ("outcomes", "waits", "activity"),
        ),
        Term(
            "protocol phrases",
            "The key phrases of a treatment protocol, set by the service, counted in session"
            " notes (whole words, any case). Counts only: no note text is shown or kept.",
            ("governance",),
        ),
        Term(
            "risk event",
            "A risk the provider reported (a PHQ-9 item 9 answer above zero, a flag, a risk"
            " assessment or a detected issue), followed until the trust acknowledges it or"
            " an operator resolves it.",
            ("governance",),
        ),
        Term(
            "overdue",
            "A risk still open (neither acknowledged at the trust nor resolved) after the"
            " connection's acknowledgement window"
            f" ({DEFAULT_ACKNOWLEDGE_MINUTES:g} minutes unless the service sets another).",
            ("governance",),
        ),
    )


GLOSSARY: tuple[Term, ...] = _terms()


def glossary(names: Sequence[str]) -> list[Term]:
    """The terms the named reports use, in glossary order."""
    return [term for term in GLOSSARY if set(term.reports) & set(names)]
