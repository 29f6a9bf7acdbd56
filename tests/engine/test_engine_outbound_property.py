"""Property: every bundle collect accepts gives write-backs every shipped mapping can build.

Hypothesis writes session bundles the way a provider could: any catalogue measure, coded
by any of the codes collect recognises (our key, SNOMED CT, the LOINC total, several of
them, beside a provider-local coding), with or without its items, decimal totals where
the measure allows, AttendOrDNACode ``5`` or ``05``, full date-times in any UTC offset,
with or without a note and an episode end. Each bundle goes through the real domain check
(``parse_session_bundle``, ADSMs on and off); for each one it accepts, collect's outbox
items (``outbox_items``) are mapped with EVERY shipped mapping's outbound section, in the
context push builds (``sync.push.build_write_item``). No mapping may fail on what collect
let in: that would be a dead letter caused by coding. The HL7 v2 payload is also built
into an ER7 message, and the FHIR one is checked with the FHIR model and for panel codes.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping as MappingType
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehr_bridge.adapters.hl7v2.build import Header, build
from ehr_bridge.domain import codes
from ehr_bridge.domain.measures import (
    MEASURES,
    PANEL_LOINC_CODES,
    Measure,
    measure_coding,
    measure_table,
    total_from_items,
)
from ehr_bridge.domain.session import build_encounter, build_score, session_bundle
from ehr_bridge.domain.validate import SessionArtefacts, parse_session_bundle, validate_resource
from ehr_bridge.errors import RecordValidationError
from ehr_bridge.mapping import Mapping, load_mapping
from ehr_bridge.store import NewOutboxItem
from ehr_bridge.sync.collect import outbox_items

JsonDict = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
#: every shipped mapping, by file name: a new one is covered the day it lands
MAPPINGS: dict[str, Mapping] = {
    path.stem: load_mapping(path) for path in sorted((ROOT / "mappings").glob("*.yaml"))
}
PATIENT_ID, REQUEST_ID, TRUST_REFERRAL = "pat-1", "sr-1", "TR0000042"
CONNECTION = "prop"
#: the id each kind of trust answered a care contact write with (push's care_contact_id)
CARE_CONTACT_IDS = {"iaptus": "CC0000007", "pcmis": "4711", "fhir-r4": "Encounter/enc-7"}
HL7_HEADER = Header(receiving_facility="RXX", local_id_authority="RXX")
PROVIDER_LOCAL = "https://provider.example/CodeSystem/questionnaires"


# --- how a provider writes a session ---------------------------------------------------
offsets = st.integers(-14 * 4, 14 * 4).map(
    lambda quarter: timezone(timedelta(minutes=15 * quarter))
)
instants = st.builds(
    lambda moment, zone: moment.replace(tzinfo=UTC).astimezone(zone),
    st.datetimes(datetime(2020, 1, 1), datetime(2030, 12, 31)),
    offsets,
)


def _reference(kind: str, ident: str) -> JsonDict:
    return {"reference": f"{kind}/{ident}"}


@st.composite
def encounters(draw: st.DrawFn) -> JsonDict:
    start = draw(instants)
    minutes = draw(st.integers(1, 600))
    end = (start + timedelta(minutes=minutes)).astimezone(draw(offsets))
    attendance = draw(st.sampled_from(sorted(codes.ATTENDANCE_DISPLAY)))
    encounter = build_encounter(
        encounter_id="enc-1",
        patient_id=PATIENT_ID,
        service_request_id=REQUEST_ID,
        start=start,
        end=end,
        appointment_type=draw(st.sampled_from(sorted(codes.APPOINTMENT_TYPE_DISPLAY))),
        attendance=attendance,
        consultation_mechanism=draw(st.sampled_from(sorted(codes.CONSULTATION_MECHANISM_DISPLAY))),
        therapist=draw(st.none() | st.just("A. Therapist")),
    )
    if draw(st.booleans()):  # the zero-padded form NHS England also receives
        encounter["extension"][0]["valueCoding"]["code"] = f"0{attendance}"
    return encounter


@st.composite
def item_sets(draw: st.DrawFn, measure: Measure) -> list[int | None]:
    values = draw(
        st.lists(
            st.integers(measure.item_min, measure.item_max),
            min_size=measure.item_count,
            max_size=measure.item_count,
        )
    )
    skipped = draw(
        st.sets(st.integers(0, measure.item_count - 1), max_size=measure.max_missing_items)
    )
    return [None if index in skipped else value for index, value in enumerate(values)]


def _codings(measure: Measure) -> list[JsonDict]:
    """Every coding collect recognises for ``measure``, as a provider might write each."""
    found = [{"system": codes.OUTCOME_MEASURE_SYSTEM, "code": measure.key}]
    if measure.snomed:
        found.append({"system": codes.SNOMED, "code": measure.snomed})
    if measure.loinc:
        found.append({"system": codes.LOINC, "code": measure.loinc, "display": "total"})
    return found


def _total(draw: st.DrawFn, measure: Measure, items: list[int | None] | None) -> float:
    """The provider's total: the items' own, or any in range (two places where allowed)."""
    if items is not None:
        total = total_from_items(measure, items)
    else:
        low, high = int(measure.total_min * 100), int(measure.total_max * 100)
        step = 1 if measure.decimal_total else 100
        total = draw(st.integers(low // step, high // step)) * step / 100
    return float(total) if draw(st.booleans()) else total  # 14 or 14.0


@st.composite
def scores(draw: st.DrawFn, encounter: JsonDict) -> list[JsonDict]:
    measure = draw(st.sampled_from(sorted(MEASURES.values(), key=lambda m: m.key)))
    with_items = draw(st.booleans())
    items = draw(item_sets(measure)) if with_items else None
    # the domain builder makes a well-formed pair; codes and values are then the provider's
    full = measure_table(adsm_enabled=True)[measure.key]
    template = full if full.enabled else _enabled_stand_in()
    response, observation = build_score(
        observation_id="obs-1",
        response_id="qr-1",
        patient_id=PATIENT_ID,
        service_request_id=REQUEST_ID,
        encounter_id=encounter["id"] if draw(st.booleans()) else None,
        measure_key=template.key,
        items=items if items is not None and template is full else _lowest(template),
        effective=draw(instants),
        adsm_enabled=True,
    )
    response["questionnaire"] = measure.questionnaire_url
    response["item"] = [
        {"linkId": str(n)} | ({"answer": [{"valueInteger": v}]} if v is not None else {})
        for n, v in enumerate(items or [], start=1)
    ]
    codings = draw(st.lists(st.sampled_from(_codings(measure)), min_size=1, unique_by=str))
    if draw(st.booleans()):
        codings.insert(draw(st.integers(0, len(codings))), {"system": PROVIDER_LOCAL, "code": "q7"})
    observation["code"] = {"coding": codings}
    observation["valueQuantity"]["value"] = _total(draw, measure, items)
    if draw(st.booleans()):  # an instant is a full time too; collect moves it
        observation["effectiveInstant"] = observation.pop("effectiveDateTime")
    if not with_items:
        observation.pop("derivedFrom")
        return [observation]
    return [response, observation]


def _lowest(measure: Measure) -> list[int | None]:
    return [measure.item_min] * measure.item_count


def _enabled_stand_in() -> Measure:
    """A measure ``build_score`` accepts, to build the shape of a disabled measure's pair."""
    return MEASURES["phq9"]


@st.composite
def notes(draw: st.DrawFn, encounter: JsonDict) -> JsonDict:
    text = draw(st.text(min_size=1, max_size=40).filter(str.strip))
    return {
        "resourceType": "DocumentReference",
        "id": "doc-1",
        "masterIdentifier": {"system": codes.artefact_identifier_system(), "value": "doc-1"},
        "status": "current",
        "type": {"coding": [{"system": codes.LOINC, "code": codes.LOINC_PROGRESS_NOTE}]},
        "subject": _reference("Patient", PATIENT_ID),
        "date": draw(instants).isoformat(),
        "description": draw(st.none() | st.just("Session note")),
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
                }
            }
        ],
        "context": {
            "encounter": [_reference("Encounter", encounter["id"])],
            "related": [_reference("ServiceRequest", REQUEST_ID)],
        },
    }


@st.composite
def episode_ends(draw: st.DrawFn) -> JsonDict:
    end = draw(instants)
    written = end.date().isoformat() if draw(st.booleans()) else end.isoformat()
    code = draw(st.sampled_from(sorted(codes.END_CODE_DISPLAY)))
    return {
        "resourceType": "EpisodeOfCare",
        "id": "eoc-1",
        "extension": [
            {
                "url": codes.END_CODE_EXTENSION,
                "valueCoding": {"system": codes.DATASET_END_CODE, "code": code},
            }
        ],
        "status": "finished",
        "patient": _reference("Patient", PATIENT_ID),
        "referralRequest": [_reference("ServiceRequest", REQUEST_ID)],
        "period": {"start": "2020-01-01", "end": written},
    }


@st.composite
def session_bundles(draw: st.DrawFn) -> JsonDict:
    encounter = draw(encounters())
    resources = [encounter, *draw(scores(encounter))]
    if draw(st.booleans()):
        resources.append(draw(notes(encounter)))
    if draw(st.booleans()):
        resources.append(draw(episode_ends()))
    return session_bundle("bundle-1", resources)


patients = st.fixed_dictionaries(
    {
        "nhs_number": st.sampled_from([None, "9990001234"]),
        "local_id": st.sampled_from([None, "RXX12345"]),
        "family_name": st.sampled_from([None, "O'Brien", "Smith|Jones^&~\\"]),
        "given_names": st.sampled_from([None, ["Alex"], ["Mary", "Anne"]]),
        "birth_date": st.sampled_from([None, "1985-04-02"]),
    }
)


# --- what push does with each outbox item ----------------------------------------------
def _accepted(bundle: JsonDict, adsm_enabled: bool) -> SessionArtefacts | None:
    try:
        return parse_session_bundle(bundle, adsm_enabled=adsm_enabled)
    except RecordValidationError:
        return None


def _resources(artefacts: SessionArtefacts) -> dict[tuple[str, str], JsonDict]:
    groups = (
        artefacts.encounters,
        artefacts.observations,
        artefacts.questionnaire_responses,
        artefacts.documents,
        artefacts.episode_ends,
    )
    return {(r["resourceType"], r["id"]): r for group in groups for r in group}


def _context(item: NewOutboxItem, name: str, patient: JsonDict) -> JsonDict:
    """The context ``build_write_item`` gives the mapping for ``item``."""
    context = dict(item.context)
    context.update(client_reference=item.key, trust_referral_id=TRUST_REFERRAL)
    context["care_contact_id"] = CARE_CONTACT_IDS.get(name) if item.depends_on else None
    context["patient"] = patient
    return context


def _payload_checks(name: str, kind: str, resource: JsonDict, payload: JsonDict) -> None:
    """What the adapter itself does next with the payload must not fail either."""
    if name.startswith("hl7v2"):
        _, message = build(kind, payload, HL7_HEADER)
        assert message.startswith("MSH|")
    if name.startswith("fhir") and kind == "assessment":
        written = {k: v for k, v in payload.items() if k != "client_reference"}
        written["subject"] = _reference("Patient", "trust-patient-1")
        validate_resource(written)
        pairs = {(c["system"], c["code"]) for c in written["code"]["coding"]}
        assert not {code for system, code in pairs if system == codes.LOINC} & PANEL_LOINC_CODES
        wanted = {(c["system"], c["code"]) for c in measure_coding(_measure_of(resource))}
        assert pairs == wanted


def _measure_of(observation: JsonDict) -> Measure:
    (key,) = [
        c["code"]
        for c in observation["code"]["coding"]
        if c["system"] == codes.OUTCOME_MEASURE_SYSTEM
    ]
    return MEASURES[key]


def _map_everywhere(artefacts: SessionArtefacts, patient: JsonDict) -> list[tuple[str, str]]:
    """Map every outbox item with every shipped mapping that writes its kind: (mapping, kind)."""
    resources = _resources(artefacts)
    built = []
    for item in outbox_items(CONNECTION, artefacts):
        resource = resources[(item.resource_type, item.resource_id)]
        for name, mapping in MAPPINGS.items():
            if item.kind not in mapping.outbound_kinds():
                continue
            payload = mapping.outbound(item.kind, resource, _context(item, name, patient))
            _payload_checks(name, item.kind, resource, payload)
            built.append((name, item.kind))
    return built


@settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(bundle=session_bundles(), patient=patients)
def test_whatever_collect_accepts_every_shipped_mapping_can_write(
    bundle: JsonDict, patient: JsonDict
) -> None:
    for adsm_enabled in (False, True):
        artefacts = _accepted(bundle, adsm_enabled)
        if artefacts is not None:
            assert _map_everywhere(artefacts, patient)


# --- the same, for each measure by name (no reliance on what hypothesis happens to draw) ---
def _enabled(table: MappingType[str, Measure]) -> list[str]:
    return sorted(key for key, measure in table.items() if measure.enabled)


ACCEPTED_MEASURES = sorted(
    set(_enabled(MEASURES)) | set(_enabled(measure_table(adsm_enabled=True)))
)


@pytest.mark.parametrize("key", ACCEPTED_MEASURES)
def test_every_measure_collect_can_accept_maps_on_every_shipped_mapping(key: str) -> None:
    measure = measure_table(adsm_enabled=True)[key]
    start = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # the night the clocks go forward
    encounter = build_encounter(
        encounter_id="enc-1",
        patient_id=PATIENT_ID,
        service_request_id=REQUEST_ID,
        start=start,
        end=start + timedelta(minutes=50),
    )
    items = [measure.item_max] * measure.item_count
    response, observation = build_score(
        observation_id="obs-1",
        response_id="qr-1",
        patient_id=PATIENT_ID,
        service_request_id=REQUEST_ID,
        encounter_id="enc-1",
        measure_key=key,
        items=items,
        effective=start,
        adsm_enabled=True,
    )
    bundle = session_bundle("bundle-1", [encounter, response, observation])
    artefacts = parse_session_bundle(bundle, adsm_enabled=True)
    patient = {"nhs_number": "9990001234", "local_id": "RXX1", "family_name": "Smith",
               "given_names": ["Alex"], "birth_date": "1985-04-02"}  # fmt: skip
    built = _map_everywhere(artefacts, patient)
    assert sorted(name for name, kind in built if kind == "assessment") == sorted(MAPPINGS)
    assert len(MAPPINGS) == 4  # iaptus, pcmis, hl7v2-ref-i12, fhir-r4
