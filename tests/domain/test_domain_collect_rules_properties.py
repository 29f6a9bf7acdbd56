"""Property: whatever collect accepts is stored in the one canonical form later steps read."""

from datetime import UTC, date, datetime, timedelta

from hypothesis import event, given, settings
from hypothesis import strategies as st

from ehr_bridge.domain import codes
from ehr_bridge.domain.measures import MEASURES, PANEL_LOINC_CODES
from ehr_bridge.domain.session import build_encounter, build_episode_end, build_score
from ehr_bridge.domain.validate import parse_session_bundle
from ehr_bridge.errors import RecordValidationError

START = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
IDS = {"patient_id": "p-1", "service_request_id": "sr-1"}

CODINGS = st.sampled_from(
    [
        (codes.SNOMED, "720433000"),
        (codes.LOINC, "44261-6"),
        (codes.OUTCOME_MEASURE_SYSTEM, "phq9"),
        (codes.SNOMED, "445455005"),
        (codes.LOINC, "70274-6"),
        (codes.OUTCOME_MEASURE_SYSTEM, "wsas"),
        (codes.OUTCOME_MEASURE_SYSTEM, "spin"),
        (codes.LOINC, "44249-1"),
        (codes.LOINC, "69737-5"),
        ("https://provider.example/tools", "PHQ9"),
    ]
)
GOOD_TIMES = ["2026-03-04T10:00:00Z", "2026-03-04T11:00:00+01:00", "2026-03-04T10:00:00.5-05:00"]
BAD_TIMES = ["2026-03-04", "2026-03", "2026", "2026-03-04T10:00:00", "2026-02-30T10:00:00Z"]
#: mostly good, so that accepted bundles are common enough to say something
TIMES = st.sampled_from(GOOD_TIMES * 15 + BAD_TIMES)
EPISODE_DATES = st.sampled_from(["2026-03-04", "2026-03-04T18:00:00+00:00", "2026-03"])
ATTENDANCE = st.sampled_from(["5", "05", "6", "06", "3", "8", "08", "5 "])
TOTALS = st.one_of(st.none(), st.integers(-1, 41), st.floats(0, 40, allow_nan=False))


@st.composite
def bundles(draw):
    measure = MEASURES[draw(st.sampled_from(["phq9", "gad7", "wsas"]))]
    items = draw(
        st.lists(
            st.integers(measure.item_min, measure.item_max),
            min_size=measure.item_count,
            max_size=measure.item_count,
        )
    )
    if measure.max_missing_items and draw(st.booleans()):
        items[draw(st.integers(0, measure.item_count - 1))] = None
    enc = build_encounter(
        encounter_id="enc-1", start=START, end=START + timedelta(minutes=30), **IDS
    )
    qr, obs = build_score(
        observation_id="obs-1",
        response_id="qr-1",
        encounter_id="enc-1",
        measure_key=measure.key,
        items=items,
        effective=START,
        **IDS,
    )
    episode = build_episode_end(
        episode_id="ep-1", start=date(2026, 1, 1), end=date(2026, 3, 4), end_code="46", **IDS
    )
    if draw(st.booleans()):
        obs["code"]["coding"] = [
            {"system": s, "code": c} for s, c in draw(st.lists(CODINGS, max_size=3))
        ]
    total = draw(TOTALS)
    if total is not None:
        obs["valueQuantity"]["value"] = total
    enc["period"]["start"], enc["period"]["end"] = draw(TIMES), draw(TIMES)
    obs["effectiveDateTime"], qr["authored"] = draw(TIMES), draw(TIMES)
    episode["period"]["end"] = draw(EPISODE_DATES)
    enc["extension"][0]["valueCoding"]["code"] = draw(ATTENDANCE)
    resources = [enc, obs, episode] + ([qr] if draw(st.booleans()) else [])
    entries = [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def _aware(value: str) -> bool:
    return datetime.fromisoformat(value).utcoffset() is not None


@settings(max_examples=300, deadline=None)
@given(bundles(), st.booleans())
def test_what_collect_accepts_is_canonical(bundle, adsm_enabled):
    try:
        parsed = parse_session_bundle(bundle, adsm_enabled=adsm_enabled)
    except RecordValidationError as error:
        event(f"refused: {error.code}")
        return
    event("accepted")
    for obs in parsed.observations:
        coded = {(c["system"], c["code"]) for c in obs["code"]["coding"]}
        assert any(system == codes.OUTCOME_MEASURE_SYSTEM for system, _ in coded)
        assert not {code for system, code in coded if system == codes.LOINC} & PANEL_LOINC_CODES
        assert _aware(obs["effectiveDateTime"])
        key = next(c for s, c in coded if s == codes.OUTCOME_MEASURE_SYSTEM)
        value = obs["valueQuantity"]["value"]
        assert MEASURES[key].total_min <= value <= MEASURES[key].total_max
        assert value == round(value, 2)
    for enc in parsed.encounters:
        assert _aware(enc["period"]["start"]) and _aware(enc["period"]["end"])
        assert enc["extension"][0]["valueCoding"]["code"] in codes.ATTENDANCE_DISPLAY
    for qr in parsed.questionnaire_responses:
        assert "authored" not in qr or _aware(qr["authored"])
    for episode in parsed.episode_ends:
        end = episode["period"]["end"]
        assert len(end) == 10 or _aware(end)
