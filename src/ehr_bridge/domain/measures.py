"""Outcome measures: one versioned catalogue of codes, item ranges and thresholds, plus scoring.

Totals written back to the trust feed national outcome reporting (caseness, recovery,
reliable change), so every total is recomputed from its items and checked against the
measure's ranges before it is trusted. The catalogue is data, not code paths: each row
cites the sources of its values in ``sources``, and a row whose codes or cut-offs are not
confirmed from a public NHS or peer-reviewed source ships ``enabled=False`` and
``confirmed=False``. ``docs/reports.md`` ("The measure catalogue") lists every value with
its source.

The same rows drive collect and the outcome reports (``ehr_bridge.reports``): ``role`` says
which side of the recovery definition a measure sits on (depression or anxiety; functioning
measures such as WSAS take no part), ``caseness`` and ``reliable_change`` are the national
thresholds, and ``problems`` lists the ICD-10 provisional diagnoses for which an
anxiety-disorder-specific measure (ADSM) replaces GAD-7. When two ADSMs share a diagnosis
(IES-R and PCL-5 for PTSD) the one listed first is used when it has a pair of scores: IES-R,
the measure Clark et al. 2018 name. ``measure_table(adsm_enabled=True)`` gives the table
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

#: bump when any row below changes, so stored scores and reports say which table judged them
MEASURES_VERSION = "2026-12"

#: LOINC *panel* codes (the whole questionnaire), often misused as a total's code: PHQ-9
#: 44249-1 and GAD-7 69737-5 (talking-therapies brief 1.3; HL7 PCO IG lists the totals)
PANEL_LOINC_CODES: frozenset[str] = frozenset({"44249-1", "69737-5"})

#: places a decimal total keeps (see ``total_from_items``)
_TWO_PLACES = Decimal("0.01")


@dataclass(frozen=True)
class Measure:
    """One questionnaire: how to code its total and what a valid answer set looks like."""

    key: str
    name: str
    snomed: str | None
    loinc: str | None  # the LOINC *total* code, never a panel code
    item_count: int
    item_min: int
    item_max: int
    total_min: float
    total_max: float
    caseness: float | None
    reliable_change: float | None
    enabled: bool
    confirmed: bool  # every value confirmed from a cited public source
    snomed_display: str | None = None
    loinc_display: str | None = None
    #: items that may be missing (replaced by the mean of the others, or left out of a mean)
    max_missing_items: int = 0
    role: MeasureRole = "functioning"
    #: ICD-10 provisional diagnoses (data-set form, no dots) this ADSM is used for
    problems: tuple[str, ...] = ()
    #: True: at caseness means above the cut-off (Mobility Inventory "above 2.3"), else at or above
    caseness_strict: bool = False
    total_kind: Literal["sum", "mean"] = "sum"
    #: the total may carry decimals (WSAS pro-rated for a missing item; a mean)
    decimal_total: bool = False
    #: the catalogue allows a total without its items (the connection must allow it too)
    itemless_total_ok: bool = False
    sources: tuple[str, ...] = ()

    @property
    def questionnaire_url(self) -> str:
        """Canonical URL of our Questionnaire for this measure (QR.questionnaire)."""
        return f"{QUESTIONNAIRE_BASE}/{self.key}"

    def at_caseness(self, total: float) -> bool:
        """True when ``total`` is a clinical case: ``>=`` the cut-off, or ``>`` when strict."""
        if self.caseness is None:
            return False
        return total > self.caseness if self.caseness_strict else total >= self.caseness

    def reliable_decrease(self, change: float) -> bool:
        """True when a last-minus-first ``change`` is a reliable improvement (``<= -RCI``)."""
        return self.reliable_change is not None and change <= -self.reliable_change

    def reliable_increase(self, change: float) -> bool:
        """True when a last-minus-first ``change`` is a reliable worsening (``>= +RCI``)."""
        return self.reliable_change is not None and change >= self.reliable_change


# --- sources (full citations in docs/reports.md, "The measure catalogue") ------------------
_MHSDS = (
    "NHS Digital MHSDS PROM reference table: NHSDigital/mental-health-monthly-statistics"
    " @7b4d742, menh_bbrb/notebooks/01_Generic_Prepare/04_mhsds_ref_tables.py"
)
_PCO_IG = "HL7 PCO IG ValueSet prom-target-measures (LOINC total codes)"
_PMC8411661 = "PMC8411661 Table 1 (IAPT thresholds, citing NHS Digital 2016)"
_CLARK_2018 = "Clark et al. 2018, Lancet 391:679-86 (PMC5942544) Table 2"
_CQUIN = "nhsengland/MHSDS @dc7bf10, CQUIN/NCDR/201920 MH CQUIN.sql lines 683-687"
_CAMCOPS = "CamCOPS server/camcops_server/tasks @56a303e"
_DD_WSAS = "NHS Data Dictionary (June 2012): WORK AND SOCIAL ADJUSTMENT SCALE SCORE"
_DD_MI = "NHS Data Dictionary: AGORAPHOBIA MOBILITY INVENTORY QUESTIONNAIRE"
_DD_PHOBIA = "NHS Data Dictionary: SPECIFIC PHOBIA QUESTIONNAIRE"


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
        itemless_total_ok=True,
        sources=(
            f"SNOMED, range 0-27: {_MHSDS} line 240",
            f"LOINC total: {_PCO_IG}",
            f"9 items 0-3: {_CAMCOPS} phq9.py",
            f"caseness >=10, RCI 6: {_PMC8411661}",
        ),
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
        itemless_total_ok=True,
        sources=(
            f"SNOMED, range 0-21: {_MHSDS} line 121",
            f"LOINC total: {_PCO_IG}",
            f"7 items 0-3: {_CAMCOPS} gad7.py",
            f"caseness >=8, RCI 4: {_PMC8411661}",
            f"anxiety measure and ADSM back-up: {_CLARK_2018}",
        ),
    ),
    # Items, range and the missing-item rule are confirmed; no SNOMED or LOINC total code
    # was found in a public NHS source, so WSAS totals carry only our own coding.
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
        decimal_total=True,
        itemless_total_ok=True,
        sources=(
            f"5 items 0-8, total 0-40: {_CAMCOPS} wsas.py; {_PMC8411661}",
            f"one missing item replaced by the mean of the others: {_DD_WSAS}",
            f"disability measure only, not in recovery: {_CLARK_2018}",
        ),
    ),
    # The three IAPT phobia items are each scored on their own: there is no total to check,
    # and no national code, so the row only documents the scale.
    Measure(
        key="phobia",
        name="IAPT Phobia Scales",
        snomed=None,
        loinc=None,
        item_count=3,
        item_min=0,
        item_max=8,
        total_min=0,
        total_max=24,
        caseness=None,
        reliable_change=None,
        enabled=False,
        confirmed=False,
        sources=(f"3 items 0-8, each scored on its own: {_DD_PHOBIA}; {_PMC8411661}",),
    ),
    # ADSM rows. The diagnosis each is paired with is confirmed; no SNOMED id and no NHS
    # Talking Therapies cut-off or RCI was confirmed (the Manual's table was not
    # retrievable), except the Mobility Inventory cut-off. They ship disabled; the caseness
    # and RCI values below are the commonly used ones, for a service to verify.
    Measure(
        key="pdss",
        name="Panic Disorder Severity Scale",
        snomed=None,
        loinc=None,
        item_count=7,
        item_min=0,
        item_max=4,
        total_min=0,
        total_max=28,
        caseness=8,
        reliable_change=5,
        enabled=False,
        confirmed=False,
        role="anxiety",
        problems=("F410",),
        sources=(
            f"7 items 0-4, total 0-28: {_CAMCOPS} pdss.py",
            f"ADSM for panic disorder F41.0: {_CLARK_2018}; {_CQUIN}",
        ),
    ),
    Measure(
        key="spin",
        name="Social Phobia Inventory",
        snomed=None,
        loinc=None,
        item_count=17,
        item_min=0,
        item_max=4,
        total_min=0,
        total_max=68,
        caseness=19,
        reliable_change=10,
        enabled=False,
        confirmed=False,
        role="anxiety",
        problems=("F401",),
        sources=(
            "17 items 0-4; 19 separates social phobia from controls: Connor et al. 2000,"
            " Br J Psychiatry 176:379-86",
            f"ADSM for social phobia F40.1: {_CLARK_2018}; {_CQUIN}",
        ),
    ),
    Measure(
        key="mi",
        name="Mobility Inventory for Agoraphobia (when alone)",
        snomed=None,
        loinc=None,
        item_count=27,
        item_min=1,
        item_max=5,
        total_min=1,
        total_max=5,
        caseness=2.3,
        reliable_change=0.73,
        enabled=False,
        confirmed=False,
        max_missing_items=5,
        role="anxiety",
        problems=("F400",),
        caseness_strict=True,
        total_kind="mean",
        decimal_total=True,
        sources=(
            f"27 items 1-5, mean item rating, invalid if more than 5 skipped: {_DD_MI}",
            f"caseness above an item average of 2.3 (when alone): {_DD_MI}",
            f"ADSM for agoraphobia F40.0: {_CLARK_2018}; {_CQUIN}",
        ),
    ),
    # No threshold found for OCI-R as NHS Talking Therapies uses it: the row stays off even
    # with the ADSM switch, so F42 falls back to GAD-7 (the national back-up rule).
    Measure(
        key="ocir",
        name="Obsessive Compulsive Inventory - Revised",
        snomed=None,
        loinc=None,
        item_count=18,
        item_min=0,
        item_max=4,
        total_min=0,
        total_max=72,
        caseness=None,
        reliable_change=None,
        enabled=False,
        confirmed=False,
        role="anxiety",
        problems=("F42",),
        sources=(
            "18 items: Foa et al. 2002, Psychol Assess 14:485-96",
            f"OCI is the ADSM for OCD F42: {_CLARK_2018}; {_CQUIN}",
        ),
    ),
    # IES-R before PCL-5: with pairs of both, IES-R is used (the PTSD measure Clark names).
    Measure(
        key="iesr",
        name="Impact of Event Scale - Revised",
        snomed=None,
        loinc=None,
        item_count=22,
        item_min=0,
        item_max=4,
        total_min=0,
        total_max=88,
        caseness=33,
        reliable_change=9,
        enabled=False,
        confirmed=False,
        role="anxiety",
        problems=("F431",),
        sources=(
            f"22 items 0-4, total 0-88: {_CAMCOPS} iesr.py",
            f"ADSM for PTSD F43.1: {_CLARK_2018}; {_CQUIN}",
        ),
    ),
    Measure(
        key="pcl5",
        name="PTSD Checklist for DSM-5",
        snomed=None,
        loinc=None,
        item_count=20,
        item_min=0,
        item_max=4,
        total_min=0,
        total_max=80,
        caseness=32,
        reliable_change=10,
        enabled=False,
        confirmed=False,
        role="anxiety",
        problems=("F431",),
        sources=(f"20 items 0-4, total 0-80: {_CAMCOPS} pcl5.py",),
    ),
    Measure(
        key="hai",
        name="Short Health Anxiety Inventory",
        snomed=None,
        loinc=None,
        item_count=18,
        item_min=0,
        item_max=3,
        total_min=0,
        total_max=54,
        caseness=18,
        reliable_change=4,
        enabled=False,
        confirmed=False,
        role="anxiety",
        problems=("F452",),
        sources=(
            "18 items 0-3 (14 main + 4 awfulness): Salkovskis et al. 2002, Psychol Med"
            " 32:843-53; KCL CADAT health anxiety questionnaires page",
            f"ADSM for health anxiety F45.2: {_CLARK_2018}; {_CQUIN}",
        ),
    ),
)

MEASURES: Mapping[str, Measure] = MappingProxyType({m.key: m for m in _ROWS})


def measure_table(*, adsm_enabled: bool = False) -> Mapping[str, Measure]:
    """The measure table as a service has chosen to use it.

    With ``adsm_enabled`` the anxiety-disorder-specific rows are switched on, for a service
    that has checked their values against the NHS Talking Therapies Manual; collect then
    accepts their scores and the reports use them. A row without both a cut-off and an RCI
    stays off: outcome flags could not be computed from it, so GAD-7 must stand in.
    """
    if not adsm_enabled:
        return MEASURES
    rows = {key: replace(m, enabled=True) if _switchable(m) else m for key, m in MEASURES.items()}
    return MappingProxyType(rows)


def _switchable(measure: Measure) -> bool:
    """An ADSM row the switch may turn on: it has a diagnosis and both thresholds."""
    thresholds = measure.caseness is not None and measure.reliable_change is not None
    return bool(measure.problems) and thresholds and not measure.enabled


def measure_for_code(system: str, code: str) -> Measure | None:
    """The measure a coding names, by SNOMED, LOINC total or our own measure key.

    Disabled measures are returned too: deciding whether to accept them is the caller's
    rule (validation rejects them), and reporting may still want to name them.
    """
    return _BY_CODE.get((system, code))


def _codes_of(measure: Measure) -> list[tuple[str, str]]:
    """Every (system, code) that names ``measure``: our key, SNOMED and LOINC total."""
    pairs = [(OUTCOME_MEASURE_SYSTEM, measure.key)]
    if measure.snomed:
        pairs.append((SNOMED, measure.snomed))
    if measure.loinc:
        pairs.append((LOINC, measure.loinc))
    return pairs


_BY_CODE: Mapping[tuple[str, str], Measure] = MappingProxyType(
    {pair: m for m in _ROWS for pair in _codes_of(m)}
)


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


def total_from_items(measure: Measure, items: Sequence[int | None]) -> int | float:
    """The total score for one completed questionnaire, after checking every item.

    Rejects a wrong item count, non-integer or out-of-range items and too many missing
    items. A sum measure allowing a missing item (WSAS: one, e.g. "not applicable" for work)
    has it replaced by the mean of the answered ones, as the NHS Data Dictionary says; a
    mean measure (Mobility Inventory) is the mean of the answered items. Neither is rounded
    to a whole score: 18.75 is the Data Dictionary's WSAS total, and rounding would move a
    score across a threshold. The result keeps two decimal places (half up): a pro-rated
    WSAS total is a multiple of 0.25, so it is exact; a mean is stated to the precision of
    its cut-off (2.3) and RCI (0.73); and a fixed precision lets a provider's own total be
    compared exactly rather than within a float tolerance. Whole results are ints.
    """
    if len(items) != measure.item_count:
        raise RecordValidationError(
            f"{measure.name} needs {measure.item_count} items", field="item", code="item_count"
        )
    answered = [_checked_item(measure, index, value) for index, value in enumerate(items)]
    present = [value for value in answered if value is not None]
    missing = len(answered) - len(present)
    if missing > measure.max_missing_items or not present:
        raise RecordValidationError(
            f"{measure.name} allows at most {measure.max_missing_items} missing items",
            field=f"item[{answered.index(None)}]",
            code="items_missing",
        )
    total = Decimal(sum(present))
    if measure.total_kind == "mean":
        total /= len(present)
    elif missing:
        total = total * measure.item_count / len(present)
    return two_places(total)


def two_places(value: Decimal | float) -> int | float:
    """A score at two decimal places (half up): an int when whole, else a float."""
    exact = value if isinstance(value, Decimal) else Decimal(str(value))
    rounded = exact.quantize(_TWO_PLACES, rounding=ROUND_HALF_UP)
    if rounded == rounded.to_integral_value():
        return int(rounded)
    return float(rounded)


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
