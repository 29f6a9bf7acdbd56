import base64
import copy
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehr_bridge.domain import codes
from ehr_bridge.domain.session import (
    build_encounter,
    build_episode_end,
    build_note,
    build_score,
    session_bundle,
)
from ehr_bridge.domain.validate import note_text, parse_session_bundle, questionnaire_items
from ehr_bridge.errors import RecordValidationError

START = datetime(2026, 11, 3, 18, 0, tzinfo=UTC)
IDS = {"patient_id": "p-1", "service_request_id": "sr-1"}
SECRET_NOTE = "Discussed panic at Tesco on Kirkstall Road with sister Jo"

# entry order in the bundle below
ENC, QR, OBS, DOC, EP = range(5)


def make_bundle(*, measure="phq9", items=(1, 2, 3, 0, 1, 2, 3, 0, 1)):
    enc = build_encounter(
        encounter_id="enc-1", start=START, end=START + timedelta(minutes=45), **IDS
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
    doc = build_note(
        document_id="doc-1", encounter_id="enc-1", text=SECRET_NOTE, authored=START, **IDS
    )
    ep = build_episode_end(
        episode_id="ep-1", start=date(2026, 9, 1), end=date(2026, 11, 3), end_code="46", **IDS
    )
    return session_bundle("b-1", [enc, qr, obs, doc, ep])


def resource(bundle, index):
    return bundle["entry"][index]["resource"]


def rejected(bundle):
    with pytest.raises(RecordValidationError) as caught:
        parse_session_bundle(bundle)
    assert SECRET_NOTE not in str(caught.value)
    return caught.value


def test_builder_output_parses_and_is_grouped():
    bundle = make_bundle()
    parsed = parse_session_bundle(bundle)
    assert (parsed.patient_id, parsed.service_request_id) == ("p-1", "sr-1")
    assert [r["id"] for r in parsed.encounters] == ["enc-1"]
    assert [r["id"] for r in parsed.questionnaire_responses] == ["qr-1"]
    assert [r["id"] for r in parsed.observations] == ["obs-1"]
    assert [r["id"] for r in parsed.documents] == ["doc-1"]
    assert [r["id"] for r in parsed.episode_ends] == ["ep-1"]
    assert parsed.observations[0] == resource(bundle, OBS)
    assert parsed.awaiting_items == {}  # its item set came in the same bundle


def test_wsas_with_one_missing_item_parses():
    parsed = parse_session_bundle(make_bundle(measure="wsas", items=(None, 4, 4, 4, 4)))
    assert parsed.observations[0]["valueQuantity"]["value"] == 20


def test_urn_uuid_and_absolute_references_are_understood():
    bundle = make_bundle()
    resource(bundle, ENC)["subject"] = {"reference": "urn:uuid:p-1"}
    resource(bundle, OBS)["basedOn"] = [
        {"reference": "https://trust.example/fhir/ServiceRequest/sr-1"}
    ]
    assert parse_session_bundle(bundle).patient_id == "p-1"


def test_a_bundle_of_only_some_artefacts_is_fine():
    bundle = make_bundle()
    bundle["entry"] = bundle["entry"][OBS : OBS + 1]
    assert len(parse_session_bundle(bundle).observations) == 1


@pytest.mark.parametrize(
    ("mutate", "field", "code"),
    [
        (lambda b: b.update(resourceType="Patient"), "resourceType", "bundle"),
        (lambda b: b.update(type="transaction"), "type", "bundle"),
        (lambda b: b.update(entry=[]), "entry", "bundle_empty"),
        (
            lambda b: b["entry"][1].update(resource={"resourceType": "Patient", "id": "p-1"}),
            "entry[1].resource.resourceType",
            "resource_type",
        ),
        (
            lambda b: b["entry"][1].update(resource={"id": "x"}),
            "entry[1].resource.resourceType",
            "resource_type",
        ),
    ],
)
def test_bundle_shape_rules(mutate, field, code):
    bundle = make_bundle()
    mutate(bundle)
    error = rejected(bundle)
    assert (error.field, error.code) == (field, code)


def test_fhir_model_errors_name_the_entry_path_not_the_value():
    bundle = make_bundle()
    resource(bundle, OBS)["valueQuantity"]["value"] = "twelve-SECRET"
    resource(bundle, DOC)["date"] = "yesterday"
    error = rejected(bundle)
    assert (error.field, error.code) == ("entry[2].resource.valueQuantity.value", "fhir")
    assert "SECRET" not in str(error)


@pytest.mark.parametrize(
    ("index", "key", "value", "field"),
    [
        (OBS, "basedOn", [{"reference": "ServiceRequest/sr-2"}], "entry[2].resource"),
        (DOC, "subject", {"reference": "Patient/p-2"}, "entry[3].resource"),
        (EP, "patient", {"reference": "Patient/p-2"}, "entry[4].resource"),
        (ENC, "basedOn", [], "entry[0].resource.basedOn"),
        (QR, "subject", {"reference": "Group/g-1"}, "entry[1].resource.subject"),
        (ENC, "subject", {"display": "someone"}, "entry[0].resource.subject"),
    ],
)
def test_every_entry_must_point_at_the_same_patient_and_referral(index, key, value, field):
    bundle = make_bundle()
    resource(bundle, index)[key] = value
    assert rejected(bundle).field == field


def test_duplicate_ids_are_refused():
    bundle = make_bundle()
    bundle["entry"].append(copy.deepcopy(bundle["entry"][DOC]))
    error = rejected(bundle)
    assert (error.field, error.code) == ("entry[5].resource.id", "id")


def _codings(bundle, *pairs):
    resource(bundle, OBS)["code"]["coding"] = [{"system": s, "code": c} for s, c in pairs]


def test_panel_only_coding_is_refused():
    bundle = make_bundle()
    _codings(bundle, (codes.LOINC, "44249-1"))
    error = rejected(bundle)
    assert (error.field, error.code) == ("entry[2].resource.code.coding[0]", "panel_code")


def test_panel_code_beside_a_total_code_is_refused_naming_the_coding():
    bundle = make_bundle()
    _codings(bundle, (codes.LOINC, "44261-6"), (codes.LOINC, "44249-1"))
    error = rejected(bundle)
    assert (error.field, error.code) == ("entry[2].resource.code.coding[1]", "panel_code")


@pytest.mark.parametrize(
    ("pairs", "code"),
    [
        ([(codes.SNOMED, "1363261000000104")], "measure_unknown"),
        ([(codes.OUTCOME_MEASURE_SYSTEM, "pdss")], "measure_disabled"),
        ([(codes.SNOMED, "720433000"), (codes.LOINC, "70274-6")], "measure_conflict"),
    ],
)
def test_observation_must_name_one_enabled_measure(pairs, code):
    bundle = make_bundle()
    _codings(bundle, *pairs)
    assert rejected(bundle).code == code


@pytest.mark.parametrize(
    ("value", "code"), [(28, "score_range"), (-1, "score_range"), (12.5, "score_type")]
)
def test_total_must_be_a_whole_number_in_range(value, code):
    bundle = make_bundle()
    resource(bundle, OBS)["valueQuantity"]["value"] = value
    error = rejected(bundle)
    assert (error.field, error.code) == ("entry[2].resource.valueQuantity.value", code)
    if code == "score_range":
        assert "0..27" in str(error)


def test_total_must_equal_the_items():
    bundle = make_bundle()
    resource(bundle, OBS)["valueQuantity"]["value"] = 14  # items sum to 13
    error = rejected(bundle)
    assert (error.field, error.code) == ("entry[2].resource.valueQuantity.value", "score_mismatch")


def test_total_without_item_set_is_range_checked_and_listed_as_awaiting_items():
    bundle = make_bundle()
    del resource(bundle, OBS)["derivedFrom"]
    resource(bundle, OBS)["valueQuantity"]["value"] = 20
    parsed = parse_session_bundle(bundle)
    assert parsed.observations[0]["valueQuantity"]["value"] == 20
    assert parsed.awaiting_items == {"obs-1": None}


def test_total_derived_from_another_measures_items_is_refused():
    bundle = make_bundle()
    resource(bundle, QR)["questionnaire"] = "https://fhir.ehr-bridge.dev/Questionnaire/gad7"
    resource(bundle, QR)["item"] = resource(bundle, QR)["item"][:7]
    assert rejected(bundle).code == "measure"


@pytest.mark.parametrize(
    ("mutate", "field", "code"),
    [
        (
            lambda qr: qr["item"][3]["answer"][0].update(valueInteger=4),
            "entry[1].resource.item[3]",
            "item_range",
        ),
        (lambda qr: qr["item"].pop(), "entry[1].resource.item", "item_count"),
        (lambda qr: qr["item"][4].pop("answer"), "entry[1].resource.item[4]", "items_missing"),
        (
            lambda qr: qr["item"][0].update(linkId="9"),
            "entry[1].resource.item[0].linkId",
            "item_link",
        ),
        (
            lambda qr: qr["item"][2]["answer"].append({"valueInteger": 1}),
            "entry[1].resource.item[2].answer",
            "item_answer",
        ),
        (
            lambda qr: qr["item"][2].update(answer=[{"valueString": "3"}]),
            "entry[1].resource.item[2].answer[0].valueInteger",
            "item_type",
        ),
        (lambda qr: qr.update(status="in-progress"), "entry[1].resource.status", "status"),
        (
            lambda qr: qr.update(questionnaire="https://example.org/Questionnaire/phq9"),
            "entry[1].resource.questionnaire",
            "measure_unknown",
        ),
    ],
)
def test_item_sets_are_checked(mutate, field, code):
    bundle = make_bundle()
    qr = resource(bundle, QR)
    mutate(qr)
    error = rejected(bundle)
    assert (error.field, error.code) == (field, code)


def test_wsas_two_missing_items_are_refused():
    bundle = make_bundle(measure="wsas", items=(None, 4, 4, 4, 4))
    resource(bundle, QR)["item"][1].pop("answer")
    assert rejected(bundle).code == "items_missing"


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda e: e.pop("extension"), "coding_missing"),
        (
            lambda e: e["extension"][0]["valueCoding"].update(system="http://other"),
            "coding_missing",
        ),
        (lambda e: e["extension"][0]["valueCoding"].update(code="9"), "code"),
        (lambda e: e["type"].pop(0), "coding_missing"),
        (lambda e: e["type"][1]["coding"][0].update(code="08"), "code"),
        (lambda e: e["period"].pop("start"), "required"),
    ],
)
def test_encounter_rules(mutate, code):
    bundle = make_bundle()
    mutate(resource(bundle, ENC))
    error = rejected(bundle)
    assert error.code == code
    assert error.field.startswith("entry[0].resource.")


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda o: o.update(status="preliminary"), "status"),
        (lambda o: o.pop("effectiveDateTime"), "required"),
        (lambda o: o.pop("valueQuantity"), "score_missing"),
    ],
)
def test_observation_rules(mutate, code):
    bundle = make_bundle()
    mutate(resource(bundle, OBS))
    assert rejected(bundle).code == code


def _attachment(bundle):
    return resource(bundle, DOC)["content"][0]["attachment"]


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda a: a.update(data=base64.b64encode(b"  \n ").decode()), "note_empty"),
        (lambda a: a.update(data=base64.b64encode(b"\xff\xfe").decode()), "note_data"),
        (lambda a: a.pop("data"), "note_data"),
        (lambda a: a.update(contentType="text/html"), "note_type"),
        (lambda a: a.pop("contentType"), "note_type"),
    ],
)
def test_notes_must_hold_plain_text(mutate, code):
    bundle = make_bundle()
    mutate(_attachment(bundle))
    error = rejected(bundle)
    assert error.code == code
    assert error.field.startswith("entry[3].resource.content[0].attachment")


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda e: e.update(status="active"), "status"),
        (lambda e: e["period"].pop("end"), "required"),
        (lambda e: e["extension"][0]["valueCoding"].update(code="99"), "code"),
        (lambda e: e.pop("extension"), "coding_missing"),
    ],
)
def test_episode_end_rules(mutate, code):
    bundle = make_bundle()
    mutate(resource(bundle, EP))
    assert rejected(bundle).code == code


def test_note_text_and_questionnaire_items_helpers():
    bundle = make_bundle()
    assert note_text(resource(bundle, DOC)) == SECRET_NOTE
    assert questionnaire_items(resource(bundle, QR)) == [1, 2, 3, 0, 1, 2, 3, 0, 1]
    with pytest.raises(RecordValidationError):
        note_text({"content": []})


def test_input_bundle_is_not_modified():
    bundle = make_bundle()
    before = copy.deepcopy(bundle)
    parse_session_bundle(bundle)
    assert bundle == before


_JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-50, 50)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
)
_JSON = st.recursive(
    _JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


_VALID = make_bundle()
_ALL_PATHS = [p for p in _paths(_VALID) if p]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_ALL_PATHS), _JSON)
def test_hostile_edits_raise_only_record_validation_errors(path, replacement):
    bundle = copy.deepcopy(_VALID)
    target = bundle
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = replacement
    try:
        parse_session_bundle(bundle)
    except RecordValidationError as error:
        assert SECRET_NOTE not in str(error)
