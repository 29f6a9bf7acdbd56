"""Outcome measures: one versioned table of codes, item ranges and thresholds, plus scoring.

Totals written back to the trust feed national outcome reporting (caseness, recovery,
reliable change), so every total is recomputed from its items and checked against the
measure's ranges before it is trusted. The table is data, not code paths: a measure whose
codes or cut-offs are not yet confirmed from a cited source ships ``enabled=False`` (or
``confirmed=False``), and ``docs/fhir-profile.md`` says which is which.

The same rows drive the outcome reports (``ehr_bridge.reports``): ``role`` says which side
of the recovery definition a measure sits on (depression or anxiety; functioning measures
such as WSAS take no part), ``caseness`` and ``reliable_change`` are the national
thresholds, and ``problems`` lists the ICD-10 presenting problems for which an
anxiety-disorder-specific measure (ADSM) replaces GAD-7. ``measure_table`` gives the table
with the ADSM rows switched on, for a service that has verified their values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Any, Literal

from ehr_bridge.domain.codes import LOINC, OUTCOME_MEASURE_SYSTEM, QUESTIONNAIRE_BASE, SNOMED
from ehr_bridge.errors import RecordValidationError

JsonDict = dict[str, Any]
#: which side of the national recovery definition a measure sits on
MeasureRole = Literal["depression", "anxiety", "functioning"]

#: bump when any row below changes, so stored scores can say which table judged them
MEASURES_VERSION = "2026-11"

#: LOINC *panel* codes that are often misused as the total-score code; never a total's code
PANEL_LOINC_CODES: frozenset[str] = frozenset({"44249-1", "69737-5"})


@dataclass(frozen=True)
class Measure:
    """One questionnaire: how to code its total and what a valid answer set looks like."""

    key: str
    name: str
    snomed: str | None
    loinc: str | None
    item_count: int
    item_min: int
    item_max: int
    total_min: int
    total_max: int
    caseness: int | None
    reliable_change: int | None
    enabled: bool
    confirmed: bool  # codes/thresholds confirmed from a cited source
    snomed_display: str | None = None
    loinc_display: str | None = None
    #: items that may be missing and are then replaced by the mean of the others
    max_missing_items: int = 0
    role: MeasureRole = "functioning"
    #: ICD-10 code prefixes (no dots) of the presenting problems this ADSM is used for
    problems: tuple[str, ...] = ()

    @property
    def questionnaire_url(self) -> str:
        """Canonical URL of our Questionnaire for this measure (QR.questionnaire)."""
        return f"{QUESTIONNAIRE_BASE}/{self.key}"

    def at_caseness(self, total: float) -> bool:
        """True when ``total`` is at or above the clinical cut-off (``>=``, as nationally)."""
        return self.caseness is not None and total >= self.caseness

    def reliable_decrease(self, change: float) -> bool:
        """True when a last-minus-first ``change`` is a reliable improvement (``<= -RCI``)."""
        return self.reliable_change is not None and change <= -self.reliable_change

    def reliable_increase(self, change: float) -> bool:
        """True when a last-minus-first ``change`` is a reliable worsening (``>= +RCI``)."""
        return self.reliable_change is not None and change >= self.reliable_change


def _adsm(
    key: str, name: str, items: int, item_max: int, cut: int, rci: int, problems: tuple[str, ...]
) -> Measure:
    """An anxiety-disorder-specific measure row: disabled until verified against the Manual."""
    return Measure(
        key=key,
        name=name,
        snomed=None,
        loinc=None,
        item_count=items,
        item_min=0,
        item_max=item_max,
        total_min=0,
        total_max=items * item_max,
        caseness=cut,
        reliable_change=rci,
        enabled=False,
        confirmed=False,
        role="anxiety",
        problems=problems,
    )


_ROWS: tuple[Measure, ...] = (
    Measure(
        key="phq9",
        name="PHQ-9",
        snomed="720433000",
        loinc="44261-6",
        item_count=9,
        item_min=0,
        item_max=3,
        total_min=0,
        total_max=27,
        caseness=10,
        reliable_change=6,
        enabled=True,
        confirmed=True,
        snomed_display="Patient Health Questionnaire Nine Item score",
        loinc_display="Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]",
        role="depression",
    ),
    Measure(
        key="gad7",
        name="GAD-7",
        snomed="445455005",
        loinc="70274-6",
        item_count=7,
        item_min=0,
        item_max=3,
        total_min=0,
        total_max=21,
        caseness=8,
        reliable_change=4,
        enabled=True,
        confirmed=True,
        snomed_display="Generalized anxiety disorder 7 item score",
        loinc_display="Generalized anxiety disorder 7 item (GAD-7) total score [Reported.PHQ]",
        role="anxiety",
    ),
    # Range and missing-item rule confirmed (Mundt 2002; NHS Data Dictionary June 2012);
    # the SNOMED concept is not, so WSAS totals carry only our own coding for now.
    Measure(
        key="wsas",
        name="Work and Social Adjustment Scale",
        snomed=None,
        loinc=None,
        item_count=5,
        item_min=0,
        item_max=8,
        total_min=0,
        total_max=40,
        caseness=None,
        reliable_change=None,
        enabled=True,
        confirmed=False,
        max_missing_items=1,
    ),
    # ADSM rows: cut-offs, RCIs and the presenting problems (panic F41.0, social phobia
    # F40.1, PTSD F43.1, health anxiety F45.2) they replace GAD-7 for are all unconfirmed.
    _adsm("pdss", "Panic Disorder Severity Scale", 7, 4, 8, 5, ("F410",)),
    _adsm("spin", "Social Phobia Inventory", 17, 4, 19, 10, ("F401",)),
    _adsm("iesr", "Impact of Event Scale - Revised", 22, 4, 33, 9, ("F431",)),
    _adsm("pcl5", "PTSD Checklist for DSM-5", 20, 4, 32, 10, ("F431",)),
    _adsm("hai", "Short Health Anxiety Inventory", 18, 3, 18, 4, ("F452",)),
)

MEASURES: Mapping[str, Measure] = MappingProxyType({m.key: m for m in _ROWS})


def measure_table(*, adsm_enabled: bool = False) -> Mapping[str, Measure]:
    """The measure table as a service has chosen to use it.

    With ``adsm_enabled`` the anxiety-disorder-specific rows are switched on, for a service
    that has checked their values against the NHS Talking Therapies Manual. Only the
    reports read this switch: collect still validates against ``MEASURES``, where ADSM
    scores stay refused until the rows are confirmed here for everyone.
    """
    if not adsm_enabled:
        return MEASURES
    rows = {
        key: replace(m, enabled=True) if m.problems and not m.enabled else m
        for key, m in MEASURES.items()
    }
    return MappingProxyType(rows)


def measure_for_code(system: str, code: str) -> Measure | None:
    """The measure a coding names, by SNOMED, LOINC total or our own measure key.

    Disabled measures are returned too: deciding whether to accept them is the caller's
    rule (validation rejects them), and reporting may still want to name them.
    """
    for measure in _ROWS:
        if system == OUTCOME_MEASURE_SYSTEM and code == measure.key:
            return measure
        if system == SNOMED and measure.snomed is not None and code == measure.snomed:
            return measure
        if system == LOINC and measure.loinc is not None and code == measure.loinc:
            return measure
    return None


def measure_coding(measure: Measure) -> list[JsonDict]:
    """Observation.code codings for a total: SNOMED, LOINC total, and our key, as known.

    Our own coding is always present so that a measure without confirmed national codes
    can still be recognised on the way back in.
    """
    codings: list[JsonDict] = []
    if measure.snomed:
        codings.append(_coding(SNOMED, measure.snomed, measure.snomed_display))
    if measure.loinc:
        codings.append(_coding(LOINC, measure.loinc, measure.loinc_display))
    codings.append(_coding(OUTCOME_MEASURE_SYSTEM, measure.key, f"{measure.name} total score"))
    return codings


def _coding(system: str, code: str, display: str | None) -> JsonDict:
    """A FHIR Coding dict, without a display when we have none."""
    coding: JsonDict = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def total_from_items(measure: Measure, items: Sequence[int | None]) -> int:
    """The total score for one completed questionnaire, after checking every item.

    Rejects a wrong item count, non-integer or out-of-range items and partial forms. A
    measure allowing missing items (WSAS: one, e.g. "not applicable" for work) has each
    missing item replaced by the mean of the answered ones, as the NHS Data Dictionary
    says; the sum is rounded half up to a whole score (rounding rule: our assumption).
    """
    if len(items) != measure.item_count:
        raise RecordValidationError(
            f"{measure.name} needs {measure.item_count} items", field="item", code="item_count"
        )
    answered = [_checked_item(measure, index, value) for index, value in enumerate(items)]
    present = [value for value in answered if value is not None]
    missing = len(answered) - len(present)
    if missing > measure.max_missing_items:
        raise RecordValidationError(
            f"{measure.name} allows at most {measure.max_missing_items} missing items",
            field=f"item[{answered.index(None)}]",
            code="items_missing",
        )
    total = Decimal(sum(present))
    if missing:
        total += Decimal(missing) * total / Decimal(len(present))
    return int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _checked_item(measure: Measure, index: int, value: int | None) -> int | None:
    """One item answer, checked for type and range; None stays None (missing)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordValidationError(
            "item answer must be an integer", field=f"item[{index}]", code="item_type"
        )
    if not measure.item_min <= value <= measure.item_max:
        raise RecordValidationError(
            f"item answer outside {measure.item_min}..{measure.item_max}",
            field=f"item[{index}]",
            code="item_range",
        )
    return value
