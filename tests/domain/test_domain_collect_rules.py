"""Collect's rules for provider scores, times and codes (issue 13): build to the standard.

Bundles are made with our builders and then edited the way a provider following FHIR R4 /
UK Core might send them: national codings only, decimal totals, date-only times, padded
codes. Each rule is checked on what ``parse_session_bundle`` returns or the field it names.
"""

import copy
from datetime import UTC, datetime, timedelta

import pytest

from ehr_bridge.domain import codes
from ehr_bridge.domain.measures import MEASURES, PANEL_LOINC_CODES, measure_coding
from ehr_bridge.domain.session import (
    build_encounter,
    build_episode_end,
    build_note,
    build_score,
    session_bundle,
)
from ehr_bridge.domain.validate import check_score_against_response, parse_session_bundle
from ehr_bridge.errors import RecordValidationError

START = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
IDS = {"patient_id": "p-1", "service_request_id": "sr-1"}
PHQ9_ITEMS = (1, 2, 3, 0, 1, 2, 3, 0, 1)  # sum 13
ENC, QR, OBS = range(3)


def make_bundle(measure="phq9", items=PHQ9_ITEMS, attendance="5"):
    enc = build_encounter(
        encounter_id="enc-1",
        start=START,
        end=START + timedelta(minutes=45),
        attendance=attendance,
        **IDS,
    )
    qr, obs = build_score(
        observation_id="obs-1",
        response_id="qr-1",
        encounter_id="enc-1",
        measure_key=measure,
        items=list(items),
        effective=START,
        **IDS,
    )
    return session_bundle("b-1", [enc, qr, obs])


def resource(bundle, index):
    return bundle["entry"][index]["resource"]


def rejected(bundle, **kwargs):
    with pytest.raises(RecordValidationError) as caught:
        parse_session_bundle(bundle, **kwargs)
    return caught.value


def set_codings(bundle, *pairs):
    resource(bundle, OBS)["code"]["coding"] = [{"system": s, "code": c} for s, c in pairs]


def stored_codes(observation):
    return [(c["system"], c["code"]) for c in observation["code"]["coding"]]


PHQ9_CANONICAL = [
    (codes.SNOMED, "720433000"),
    (codes.LOINC, "44261-6"),
    (codes.OUTCOME_MEASURE_SYSTEM, "phq9"),
]


# --- recognising a measure by any code the catalogue knows --------------------------------
@pytest.mark.parametrize(
    "pairs",
    [
        [(codes.SNOMED, "720433000"), (codes.LOINC, "44261-6")],  # national only
        [(codes.SNOMED, "720433000")],  # SNOMED only
        [(codes.LOINC, "44261-6")],  # LOINC total only
        [(codes.OUTCOME_MEASURE_SYSTEM, "phq9")],  # our key only
        [("https://provider.example/CodeSystem/tools", "PHQ9"), (codes.SNOMED, "720433000")],
    ],
    ids=["national", "snomed-only", "loinc-only", "key-only", "with-local-coding"],
)
def test_any_catalogue_code_is_recognised_and_normalised(pairs):
    bundle = make_bundle()
    set_codings(bundle, *pairs)
    resource(bundle, OBS)["code"]["text"] = "PHQ-9 (provider wording)"
    observation = parse_session_bundle(bundle).observations[0]
    assert stored_codes(observation) == PHQ9_CANONICAL
    assert observation["code"]["coding"] == measure_coding(MEASURES["phq9"])
    assert observation["code"]["text"] == "PHQ-9 (provider wording)"


@pytest.mark.parametrize("panel", sorted(PANEL_LOINC_CODES))
@pytest.mark.parametrize("position", [0, 1])
def test_a_panel_code_anywhere_is_quarantined_naming_the_coding(panel, position):
    bundle = make_bundle()
    right = [(codes.SNOMED, "720433000"), (codes.LOINC, "44261-6")]
    right.insert(position, (codes.LOINC, panel))
    set_codings(bundle, *right)
    error = rejected(bundle)
    assert (error.field, error.code) == (f"entry[2].resource.code.coding[{position}]", "panel_code")


@pytest.mark.parametrize(
    ("pairs", "field", "code"),
    [
        ([(codes.SNOMED, "720433000"), (codes.LOINC, "70274-6")], "code", "measure_conflict"),
        (
            [(codes.OUTCOME_MEASURE_SYSTEM, "phq9"), (codes.SNOMED, "445455005")],
            "code",
            "measure_conflict",
        ),
        ([(codes.SNOMED, "1363261000000104")], "code", "measure_unknown"),
        ([(codes.OUTCOME_MEASURE_SYSTEM, "phq8")], "code.coding[0]", "measure_unknown"),
        ([], "code", "measure_unknown"),
    ],
)
def test_conflicting_or_unknown_measures_are_refused(pairs, field, code):
    bundle = make_bundle()
    set_codings(bundle, *pairs)
    if not pairs:
        del resource(bundle, OBS)["code"]["coding"]
    error = rejected(bundle)
    assert (error.field, error.code) == (f"entry[2].resource.{field}", code)


# --- ADSMs --------------------------------------------------------------------------------
def adsm_bundle(key):
    """A bundle whose score is an ADSM, built from a PHQ-9 bundle by hand (the builders
    refuse disabled measures, as they should)."""
    measure = MEASURES[key]
    items = [measure.item_min + (i % 2) for i in range(measure.item_count)]
    bundle = make_bundle()
    qr, obs = resource(bundle, QR), resource(bundle, OBS)
    qr["questionnaire"] = measure.questionnaire_url
    qr["item"] = [
        {"linkId": str(n), "answer": [{"valueInteger": v}]} for n, v in enumerate(items, 1)
    ]
    obs["code"] = {"coding": measure_coding(measure)}
    total = sum(items) / len(items) if measure.total_kind == "mean" else sum(items)
    obs["valueQuantity"]["value"] = round(total, 2)
    return bundle


SWITCHABLE_ADSMS = ["pdss", "spin", "mi", "iesr", "pcl5", "hai"]


@pytest.mark.parametrize("key", SWITCHABLE_ADSMS)
def test_adsm_bundles_need_the_adsm_switch(key):
    bundle = adsm_bundle(key)
    assert rejected(copy.deepcopy(bundle)).code in {"measure_unknown", "measure_disabled"}
    parsed = parse_session_bundle(bundle, adsm_enabled=True)
    assert stored_codes(parsed.observations[0])[-1] == (codes.OUTCOME_MEASURE_SYSTEM, key)
    assert [r["id"] for r in parsed.questionnaire_responses] == ["qr-1"]


def test_an_adsm_without_thresholds_stays_refused_even_with_the_switch():
    error = rejected(adsm_bundle("ocir"), adsm_enabled=True)
    assert error.code in {"measure_unknown", "measure_disabled"}


def test_adsm_item_sums_are_checked_too():
    bundle = adsm_bundle("spin")
    resource(bundle, OBS)["valueQuantity"]["value"] += 1
    error = rejected(bundle, adsm_enabled=True)
    assert (error.field, error.code) == ("entry[2].resource.valueQuantity.value", "score_mismatch")


def test_mobility_inventory_total_is_the_mean_of_its_items():
    bundle = adsm_bundle("mi")  # 27 items alternating 1, 2: mean 40/27 = 1.481... -> 1.48
    assert resource(bundle, OBS)["valueQuantity"]["value"] == 1.48
    parsed = parse_session_bundle(bundle, adsm_enabled=True)
    assert parsed.observations[0]["valueQuantity"]["value"] == 1.48
    resource(bundle, QR)["item"][0]["answer"][0]["valueInteger"] = 0  # item range is 1..5
    error = rejected(bundle, adsm_enabled=True)
    assert (error.field, error.code) == ("entry[1].resource.item[0]", "item_range")


# --- decimal totals -----------------------------------------------------------------------
def test_wsas_pro_rated_total_18_75_is_accepted_and_checked_exactly():
    bundle = make_bundle(measure="wsas", items=(3, 4, None, 4, 4))
    assert resource(bundle, OBS)["valueQuantity"]["value"] == 18.75
    parsed = parse_session_bundle(bundle)
    assert parsed.observations[0]["valueQuantity"]["value"] == 18.75
    resource(bundle, OBS)["valueQuantity"]["value"] = 18.5
    error = rejected(bundle)
    assert (error.field, error.code) == ("entry[2].resource.valueQuantity.value", "score_mismatch")


def test_a_decimal_total_is_compared_at_two_places():
    bundle = make_bundle(measure="wsas", items=(3, 4, None, 4, 4))
    resource(bundle, OBS)["valueQuantity"]["value"] = 18.7500001
    assert parse_session_bundle(bundle).observations[0]["valueQuantity"]["value"] == 18.75


def test_an_item_less_wsas_decimal_is_range_checked():
    bundle = make_bundle(measure="wsas", items=(3, 4, None, 4, 4))
    del bundle["entry"][QR]
    parsed = parse_session_bundle(bundle)
    assert parsed.observations[0]["valueQuantity"]["value"] == 18.75
    assert parsed.awaiting_items == {"obs-1": "qr-1"}
    bundle["entry"][OBS - 1]["resource"]["valueQuantity"]["value"] = 40.25
    assert rejected(bundle).code == "score_range"


@pytest.mark.parametrize("value", [18.5, 12.25])
def test_an_integer_measure_refuses_a_decimal_total(value):
    bundle = make_bundle()
    resource(bundle, OBS)["valueQuantity"]["value"] = value
    error = rejected(bundle)
    assert (error.field, error.code) == ("entry[2].resource.valueQuantity.value", "score_type")


def test_a_whole_float_total_is_stored_as_an_integer():
    bundle = make_bundle()
    resource(bundle, OBS)["valueQuantity"]["value"] = 13.0
    value = parse_session_bundle(bundle).observations[0]["valueQuantity"]["value"]
    assert value == 13 and isinstance(value, int)


# --- items in another bundle --------------------------------------------------------------
def test_a_total_whose_items_are_elsewhere_awaits_them_and_is_checked_later():
    bundle = make_bundle()
    response = copy.deepcopy(resource(bundle, QR))
    del bundle["entry"][QR]
    parsed = parse_session_bundle(bundle)
    assert parsed.awaiting_items == {"obs-1": "qr-1"}
    observation = parsed.observations[0]
    check_score_against_response(observation, response)  # items sum to the total: no error
    observation["valueQuantity"]["value"] = 14
    with pytest.raises(RecordValidationError) as caught:
        check_score_against_response(observation, response)
    assert (caught.value.field, caught.value.code) == (
        "Observation.valueQuantity.value",
        "score_mismatch",
    )


@pytest.mark.parametrize(
    ("mutate", "field", "code"),
    [
        (lambda o, r: r.update(status="in-progress"), "QuestionnaireResponse.status", "status"),
        (
            lambda o, r: r["item"][2]["answer"][0].update(valueInteger=4),
            "QuestionnaireResponse.item[2]",
            "item_range",
        ),
        (lambda o, r: r["item"].pop(), "QuestionnaireResponse.item", "item_count"),
        (lambda o, r: r.update(id="qr-2"), "Observation.derivedFrom", "derived_from"),
        (
            lambda o, r: r.update(subject={"reference": "Patient/p-2"}),
            "QuestionnaireResponse",
            "reference_mismatch",
        ),
        (
            lambda o, r: r.update(questionnaire=MEASURES["gad7"].questionnaire_url),
            "Observation.derivedFrom",
            "measure",
        ),
        (
            lambda o, r: o.update(valueQuantity={"value": 28}),
            "Observation.valueQuantity.value",
            "score_range",
        ),
    ],
)
def test_the_later_check_names_the_field_and_rule(mutate, field, code):
    bundle = make_bundle()
    response, observation = copy.deepcopy(resource(bundle, QR)), resource(bundle, OBS)
    mutate(observation, response)
    with pytest.raises(RecordValidationError) as caught:
        check_score_against_response(observation, response)
    assert (caught.value.field, caught.value.code) == (field, code)


def test_the_later_check_uses_the_adsm_switch():
    bundle = adsm_bundle("pdss")
    observation, response = resource(bundle, OBS), resource(bundle, QR)
    with pytest.raises(RecordValidationError):
        check_score_against_response(observation, response)
    check_score_against_response(observation, response, adsm_enabled=True)


def test_a_total_derived_from_two_item_sets_is_refused():
    bundle = make_bundle()
    resource(bundle, OBS)["derivedFrom"].append({"reference": "QuestionnaireResponse/qr-9"})
    error = rejected(bundle)
    assert (error.field, error.code) == ("entry[2].resource.derivedFrom", "derived_from")


# --- dates and times ----------------------------------------------------------------------
FULL_TIME_FIELDS = [
    (ENC, ("period", "start"), "entry[0].resource.period.start"),
    (ENC, ("period", "end"), "entry[0].resource.period.end"),
    (OBS, ("effectiveDateTime",), "entry[2].resource.effectiveDateTime"),
    (QR, ("authored",), "entry[1].resource.authored"),
]
NOT_FULL = ["2026-03-04", "2026-03", "2026", "2026-03-04T10:00:00", "2026-03-04T10:00"]


def _set(target, keys, value):
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value


@pytest.mark.parametrize("value", NOT_FULL)
@pytest.mark.parametrize(("index", "keys", "field"), FULL_TIME_FIELDS)
def test_times_without_a_time_or_an_offset_are_refused_naming_the_field(index, keys, field, value):
    bundle = make_bundle()
    _set(resource(bundle, index), keys, value)
    error = rejected(bundle)
    assert (error.field, error.code) == (field, "datetime_precision")
    assert "needs a date and time with a UTC offset" in str(error)


@pytest.mark.parametrize("value", ["2026-03-04", "2026-03-04T10:00:00"])
def test_a_note_time_must_be_full_too(value):
    note = build_note(document_id="doc-1", encounter_id="enc-1", text="note", authored=START, **IDS)
    note["date"] = value  # session_bundle would refuse it: built by hand, as a provider might
    error = rejected(
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": note}]}
    )
    assert (error.field, error.code) == ("entry[0].resource.date", "datetime_precision")


@pytest.mark.parametrize(
    "value", ["2026-03-04T10:00:00Z", "2026-03-04T10:00:00.123+01:00", "2026-10-25T01:30:00-00:00"]
)
def test_full_times_with_any_offset_are_accepted(value):
    bundle = make_bundle()
    resource(bundle, OBS)["effectiveDateTime"] = value
    assert parse_session_bundle(bundle).observations[0]["effectiveDateTime"]


def test_an_instant_becomes_the_score_time_and_a_period_is_refused():
    bundle = make_bundle()
    obs = resource(bundle, OBS)
    obs["effectiveInstant"] = obs.pop("effectiveDateTime")
    stored = parse_session_bundle(bundle).observations[0]
    assert datetime.fromisoformat(stored["effectiveDateTime"]) == START
    assert "effectiveInstant" not in stored
    del obs["effectiveInstant"]
    obs["effectivePeriod"] = {"start": "2026-03-04T10:00:00Z", "end": "2026-03-04T10:05:00Z"}
    error = rejected(bundle)
    assert (error.field, error.code) == ("entry[2].resource.effectivePeriod", "effective_type")


def test_an_encounter_needs_an_end_after_its_start():
    bundle = make_bundle()
    del resource(bundle, ENC)["period"]["end"]
    assert rejected(copy.deepcopy(bundle)).field == "entry[0].resource.period.end"
    resource(bundle, ENC)["period"]["end"] = "2026-03-04T09:00:00+00:00"
    assert rejected(bundle).code == "period"


@pytest.mark.parametrize(
    ("value", "ok"),
    [("2026-03-04", True), ("2026-03-04T17:00:00+00:00", True), ("2026-03", False)],
)
def test_an_episode_end_may_be_a_date(value, ok):
    episode = build_episode_end(
        episode_id="ep-1", start=START.date(), end=START.date(), end_code="46", **IDS
    )
    episode["period"]["end"] = value
    bundle = session_bundle("b", [episode])
    if ok:
        stored = parse_session_bundle(bundle).episode_ends[0]["period"]["end"]
        assert stored.replace("Z", "+00:00") == value
    else:
        assert rejected(bundle).code == "datetime_precision"


# --- data-set codes -----------------------------------------------------------------------
def _attendance(encounter):
    return encounter["extension"][0]["valueCoding"]["code"]


@pytest.mark.parametrize(("sent", "stored"), [("05", "5"), ("5", "5"), ("02", "2"), ("07", "7")])
def test_zero_padded_attendance_is_normalised(sent, stored):
    bundle = make_bundle()
    resource(bundle, ENC)["extension"][0]["valueCoding"]["code"] = sent
    assert _attendance(parse_session_bundle(bundle).encounters[0]) == stored


@pytest.mark.parametrize("sent", ["005", "1", "01", "8", " 5", "5 "])
def test_attendance_outside_the_code_list_is_refused(sent):
    bundle = make_bundle()
    resource(bundle, ENC)["extension"][0]["valueCoding"]["code"] = sent
    assert rejected(bundle).code in {"code", "fhir"}


@pytest.mark.parametrize(("position", "sent"), [(0, "2"), (1, "1")])
def test_two_digit_codes_are_not_guessed_from_one_digit(position, sent):
    bundle = make_bundle()  # type[0] is AppType "02", type[1] is ConsMechanism "10"
    resource(bundle, ENC)["type"][position]["coding"][0]["code"] = sent
    assert rejected(bundle).code == "code"
