"""``primitives.check_built`` gives the fhir.resources model's verdict on our builders' output.

The pull path no longer parses the Patient and ServiceRequest it builds with the model, so
these tests are what stands behind that: each primitive rule against fhir_core's own type
(every BMP code point, plus hypothesis), each shape element against the model's type and
cardinality, and the whole check against ``model_validate`` over hostile referral facts.
"""

from __future__ import annotations

import types
import typing
from datetime import date
from typing import Any

import pydantic
import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir_core.types import (
    CanonicalType,
    CodeType,
    DateTimeType,
    DateType,
    IdType,
    StringType,
    UriType,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ehr_bridge.domain import codes, primitives
from ehr_bridge.domain.facts import PatientFacts, ReferralFacts
from ehr_bridge.domain.ids import resource_id
from ehr_bridge.domain.primitives import Element, Many, Primitive, check_built
from ehr_bridge.domain.referral import (
    ProviderRef,
    _patient,
    _service_request,
    build_referral_resources,
)
from ehr_bridge.domain.validate import check_own_resource, validate_resource
from ehr_bridge.errors import RecordValidationError

ADAPTERS = {
    "string": pydantic.TypeAdapter(StringType),
    "code": pydantic.TypeAdapter(CodeType),
    "id": pydantic.TypeAdapter(IdType),
    "uri": pydantic.TypeAdapter(UriType),
    "canonical": pydantic.TypeAdapter(CanonicalType),
    "date": pydantic.TypeAdapter(DateType),
    "dateTime": pydantic.TypeAdapter(DateTimeType),
}
PRIMITIVES = {
    p.fhir_type: p
    for p in (
        primitives.STRING,
        primitives.CODE,
        primitives.ID,
        primitives.URI,
        primitives.CANONICAL,
        primitives.DATE,
        primitives.DATE_TIME,
    )
}
#: where ours is knowingly stricter than fhir_core (FHIR's own rules; builders never trip them)
STRICTER = {"id", "uri", "canonical"}

#: characters that tell the rules apart: Unicode White_Space, Python-only whitespace
#: (U+001C..U+001F), invisible non-whitespace, controls, a lone surrogate
TRICKY = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2007\u200a\u2028\u2029\u202f\u205f\u3000"
    "\x1c\x1d\x1e\x1f\u180e\u200b\ufeff\x00\x07\x7f\ud800\udfff"
)
tricky_char = st.one_of(st.sampled_from(TRICKY), st.characters(codec="utf-8"), st.characters())
hostile_text = st.one_of(
    st.text(tricky_char, max_size=12),
    st.sampled_from(["", " ", "\x0b", "\xa0", "a  b", " a", "a ", "a\n", "a\x1cb", "\x1c"]),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "\x0b", " ", "é"]), st.integers(1, 5000)),
)


def model_accepts(fhir_type: str, value: str) -> bool:
    try:
        ADAPTERS[fhir_type].validate_python(value)
    except (pydantic.ValidationError, ValueError):
        return False
    return True


def ours_accepts(fhir_type: str, value: str) -> bool:
    return PRIMITIVES[fhir_type].rule(value) is None


def assert_agrees(fhir_type: str, value: str) -> None:
    ours, model = ours_accepts(fhir_type, value), model_accepts(fhir_type, value)
    if fhir_type == "id":
        model = model and len(value) <= 64
    if fhir_type in ("uri", "canonical"):  # fhir_core takes any valid Unicode; FHIR no spaces
        spaced = any(c.isspace() and c not in "\x1c\x1d\x1e\x1f" for c in value)
        assert not ours or model
        assert ours == (bool(value) and not spaced and model)
        return
    assert ours == model, (fhir_type, value.encode("utf-8", "surrogatepass")[:80])


# --- each primitive rule against fhir_core ------------------------------------------------
@pytest.mark.parametrize("fhir_type", ["string", "code", "id", "uri", "date"])
def test_every_bmp_code_point_is_judged_as_fhir_core_does(fhir_type: str) -> None:
    for point in range(0x10000):
        char = chr(point)
        for value in (char, f"a{char}b", f"{char}a", f"a{char}{char}b"):
            assert_agrees(fhir_type, value)


@settings(max_examples=400)
@given(value=hostile_text)
@example(value="a\x1c")
@example(value="\x1c")
def test_string_and_code_rules_agree_with_fhir_core(value: str) -> None:
    assert_agrees("string", value)
    assert_agrees("code", value)
    assert_agrees("id", value)
    assert_agrees("uri", value)


dates = st.one_of(
    st.from_regex(primitives._DATE, fullmatch=True),
    st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", fullmatch=True),
    st.dates().map(date.isoformat),
    hostile_text,
)
date_times = st.one_of(
    st.from_regex(primitives._DATE_TIME, fullmatch=True),
    st.from_regex(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})",
        fullmatch=True,
    ),
    dates,
)


@settings(max_examples=400)
@given(value=dates)
@example(value="2024-02-30")
@example(value="0000")
def test_date_rule_agrees_with_fhir_core(value: str) -> None:
    assert_agrees("date", value)


@settings(max_examples=400)
@given(value=date_times)
@example(value="2016-12-31T23:59:60Z")
@example(value="2016-12-31T23:59:60")
@example(value="2016-02-30T10:00:00Z")
def test_date_time_rule_never_accepts_what_fhir_core_refuses(value: str) -> None:
    ours, model = ours_accepts("dateTime", value), model_accepts("dateTime", value)
    assert not ours or model
    if len(value) <= 10:  # the form our builders write: equal verdicts
        assert ours == model


@settings(max_examples=300)
@given(value=st.one_of(hostile_text, dates))
def test_fast_patterns_only_pass_what_the_rule_passes(value: str) -> None:
    for primitive in PRIMITIVES.values():
        if primitive.fast.fullmatch(value):
            assert primitive.rule(value) is None, primitive.fhir_type


# --- each shape against the fhir.resources model -----------------------------------------
def _model_type(annotation: Any) -> tuple[bool, str]:
    """(is a list, FHIR type name) of a fhir.resources field annotation."""
    many = False
    while True:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        origin = typing.get_origin(annotation)
        if origin is list:
            many, annotation = True, args[0]
        elif origin in (typing.Union, types.UnionType):
            annotation = args[0]
        elif origin is typing.Annotated:
            return many, type(annotation.__metadata__[0]).__name__.lower()
        else:
            return many, annotation._model_klass.rsplit(".", 1)[1].lower()


def _elements() -> dict[str, Element]:
    """Every complex element the shapes reach, by FHIR type name."""
    found: dict[str, Element] = {}
    pending = list(primitives.SHAPES.values())
    while pending:
        element = pending.pop()
        found[element.name] = element
        for node in element.children.values():
            inner = node.item if isinstance(node, Many) else node
            if isinstance(inner, Element) and inner.name not in found:
                pending.append(inner)
    return found


def _children() -> list[tuple[str, str, Any]]:
    return [
        (owner, name, node)
        for owner, element in sorted(_elements().items())
        for name, node in element.children.items()
        if name != "resourceType"
    ]


@pytest.mark.parametrize(("owner", "name", "node"), _children())
def test_shape_elements_have_the_model_type_and_cardinality(
    owner: str, name: str, node: Any
) -> None:
    field = get_fhir_model_class(owner).model_fields[name]
    many, fhir_type = _model_type(field.annotation)
    assert isinstance(node, Many) == many
    inner = node.item if isinstance(node, Many) else node
    ours = inner.fhir_type if isinstance(inner, Primitive) else inner.name
    assert ours.lower() == fhir_type


@pytest.mark.parametrize("owner", sorted(_elements()))
def test_shapes_require_what_the_model_requires(owner: str) -> None:
    element = _elements()[owner]
    required = {
        name
        for name, field in get_fhir_model_class(owner).model_fields.items()
        if (field.json_schema_extra or {}).get("element_required") or field.is_required()
    }
    assert element.required == required


# --- the whole check against model_validate, over hostile referral facts ----------------
safe_key = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=20)
odd_code = st.one_of(hostile_text, st.sampled_from(["F411", "B1", "183524004", "a b", "01"]))
patients = st.builds(
    PatientFacts,
    local_id=safe_key,
    nhs_number=st.sampled_from([None, "9434765919", "9000000009"]),
    nhs_number_status=st.one_of(
        st.none(), st.sampled_from(sorted(codes.NHS_NUMBER_VERIFICATION_DISPLAY))
    ),
    family_name=st.one_of(st.none(), hostile_text),
    given_names=st.lists(hostile_text, max_size=3),
    birth_date=st.one_of(st.none(), st.dates()),
    gender=st.one_of(st.none(), st.sampled_from(["male", "female", "other", "unknown"]), odd_code),
    postcode=st.one_of(st.none(), hostile_text),
    phone=st.one_of(st.none(), hostile_text),
    email=st.one_of(st.none(), hostile_text),
)
referrals = st.builds(
    ReferralFacts,
    trust_referral_id=safe_key,
    received_date=st.dates(),
    source_of_referral=odd_code,
    source_of_referral_snomed=st.one_of(st.none(), odd_code),
    presenting_problem=st.one_of(st.none(), odd_code),
    status=st.one_of(st.sampled_from(["active", "completed", "revoked"]), odd_code),
    referred_on_to=st.just("IESO01"),
    patient=patients,
)
providers = st.builds(
    ProviderRef,
    code=hostile_text,
    display=hostile_text,
    ods_code=st.one_of(st.none(), hostile_text),
)
#: facts the referral rules let through: hostile only where the rules do not look
buildable = st.builds(
    ReferralFacts,
    trust_referral_id=safe_key.filter(str.strip),
    received_date=st.dates(),
    source_of_referral=st.from_regex(r"[A-M][0-9]", fullmatch=True),
    source_of_referral_snomed=st.one_of(st.none(), odd_code),
    presenting_problem=st.one_of(st.none(), st.sampled_from(["F411", "F32.1", "F43"])),
    status=st.sampled_from(["active", "completed", "revoked"]),
    referred_on_to=st.just("IESO01"),
    patient=patients.filter(lambda p: p.local_id.strip()).map(
        lambda p: p.model_copy(update={"gender": p.gender if p.gender in GENDERS else None})
    ),
)
GENDERS = ("male", "female", "other", "unknown")
connections = st.from_regex(r"[a-z0-9][a-z0-9\-]{0,62}", fullmatch=True)


def model_verdict(resource: dict[str, Any]) -> bool:
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except pydantic.ValidationError:
        return False
    return True


def fast_verdict(resource: dict[str, Any]) -> RecordValidationError | None:
    try:
        assert check_built(resource, path="r") is resource
    except RecordValidationError as exc:
        return exc
    return None


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(connection=connections, provider=providers, facts=referrals, nhs=st.booleans())
def test_fast_check_accepts_built_resources_exactly_when_the_model_does(
    connection: str, provider: ProviderRef, facts: ReferralFacts, nhs: bool
) -> None:
    pid = f"{connection}-patient"
    built = (
        _patient(connection, pid, facts.patient, facts.patient.nhs_number if nhs else None),
        _service_request(connection, provider, facts, pid),
    )
    for resource in built:
        error = fast_verdict(resource)
        assert (error is None) == model_verdict(resource)
        if error is None:
            assert validate_resource(resource) == resource  # already the canonical dump
        else:
            assert error.code == "fhir" and error.field and error.field.startswith("r.")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(provider=providers, facts=buildable)
def test_build_quarantines_with_fhir_code_only_what_the_model_refuses(
    provider: ProviderRef, facts: ReferralFacts
) -> None:
    pid = resource_id("c1", "Patient", facts.patient.local_id)
    unchecked = (
        _patient("c1", pid, facts.patient, facts.patient.nhs_number),
        _service_request("c1", provider, facts, pid),
    )
    try:
        resources = build_referral_resources(
            "c1", provider, facts, today=date(9999, 12, 31), allow_test_range=True
        )
    except RecordValidationError as exc:
        assert exc.code == "fhir"
        assert not all(model_verdict(r) for r in unchecked)
        assert exc.record == facts.trust_referral_id
        assert exc.field and exc.field.split(".")[0] in ("patient", "service_request")
        return
    for resource in (resources.patient, resources.service_request):
        assert model_verdict(resource)


# --- failures name the element and the rule, never the value -----------------------------
def test_failure_names_record_path_and_rule_but_not_the_value() -> None:
    facts = ReferralFacts(
        trust_referral_id="SR1",
        received_date=date(2026, 1, 2),
        source_of_referral="B1",
        referred_on_to="IESO01",
        patient=PatientFacts(local_id="P1", given_names=["Alex", "\u2003"]),
    )
    with pytest.raises(RecordValidationError) as caught:
        build_referral_resources(
            "c1", ProviderRef("IESO01", "P"), facts, today=date(2026, 1, 3), allow_test_range=True
        )
    error = caught.value
    assert (error.record, error.field, error.code) == ("SR1", "patient.name[0].given[1]", "fhir")
    assert "string" in error.reason


def test_value_text_never_reaches_the_message() -> None:
    provider = ProviderRef("IESO01", "Provider")
    facts = ReferralFacts(
        trust_referral_id="SR1",
        received_date=date(2026, 1, 2),
        source_of_referral="B1",
        source_of_referral_snomed="SECRET  VALUE",
        referred_on_to="IESO01",
        patient=PatientFacts(local_id="P1"),
    )
    with pytest.raises(RecordValidationError) as caught:
        build_referral_resources(
            "c1", provider, facts, today=date(2026, 1, 3), allow_test_range=True
        )
    assert caught.value.field == "service_request.extension[0].valueCodeableConcept.coding[1].code"
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize(
    ("resource", "field", "rule"),
    [
        ({"resourceType": "Patient", "id": "p1", "gender": None}, "gender", "null"),
        ({"resourceType": "Patient", "id": "p1", "identifier": []}, "identifier", "non-empty"),
        ({"resourceType": "Patient", "id": "p1", "name": [{}]}, "name[0]", "non-empty"),
        ({"resourceType": "Patient", "id": "p1", "photo": [{"url": "x"}]}, "photo", "no element"),
        ({"resourceType": "Patient", "id": "p" * 65}, "id", "id"),
        ({"resourceType": "ServiceRequest", "id": "s1", "intent": "order"}, "status", "required"),
        ({"resourceType": "Observation", "id": "o1"}, "resourceType", "shape"),
    ],
)
def test_shapes_refuse_what_no_builder_emits(
    resource: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(RecordValidationError) as caught:
        check_built(resource)
    assert caught.value.field == field
    assert rule in caught.value.reason


def test_check_own_resource_uses_the_model_for_types_without_a_shape() -> None:
    with pytest.raises(RecordValidationError) as caught:
        check_own_resource(
            {"resourceType": "Encounter", "id": "e1", "status": "a  b", "class": {"code": "AMB"}}
        )
    assert (caught.value.field, caught.value.code) == ("status", "fhir")
