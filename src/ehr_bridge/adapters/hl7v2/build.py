"""Outbound messages built with hl7apy: ORU^R01 for measures and risks, MDM^T02 for notes.

The connection's mapping (``outbound.assessment`` / ``outbound.clinical_note``) produces a
payload; the models below say which keys the writer reads, so a mapping that produces
anything else is refused with the key named. Our client reference travels three times,
so a receiver can de-duplicate a resent message however it files it: MSH-10, the filler
order number (ORC-3/OBR-3) or unique document number (TXA-12), and the trust's referral
id is the placer order number (ORC-2/OBR-2, TXA-14).

hl7apy knows each version's segments and groups, so it places every segment; we hand it
field text already escaped by ``er7.escape``. That matters: hl7apy does not escape the
subcomponent separator and passes CR through, which would let a note break a segment.
Escaped text contains only the five standard sequences, which hl7apy leaves as they are.

A risk alert is an ORU^R01 too: one coded observation (OBX-2 CWE, CE in 2.4) whose value
is the risk's SNOMED CT concept, with OBX-8 the abnormal flag for non-numeric results (HL7
table 0078: ``A`` abnormal, ``AA`` very abnormal, the non-numeric analogue of a panic
value), the priority in TQ1-9 (table 0485: ``S`` stat, ``A`` ASAP, ``R`` routine; in 2.4,
which has no TQ1, in OBR-27 component 6, table 0027), why it was raised as the observation
method (OBX-17), and the shareable summary as an NTE after the OBX (NTE-4 ``RE``, a remark).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Field, Message, Segment
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError
from pydantic import Field as ModelField

from ehr_bridge.adapters.hl7v2.dates import hl7_timestamp
from ehr_bridge.adapters.hl7v2.er7 import escape, escape_lines
from ehr_bridge.errors import TerminalError

Version = Literal["2.4", "2.5", "2.5.1"]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    client_reference: str = ModelField(min_length=1)
    referral_id: str = ModelField(min_length=1)
    patient_nhs_number: str | None = None
    patient_local_id: str | None = None
    #: PID-5 and PID-7, sent only when the trust's mapping has rules for them
    patient_family_name: str | None = None
    patient_given_names: list[str] | None = None
    patient_birth_date: date | None = None


class AssessmentPayload(_Payload):
    """What ``outbound.assessment`` must produce for an ORU^R01."""

    tool_code: str = ModelField(min_length=1)
    tool_name: str | None = None
    tool_system: str = "SCT"
    score: int | float
    completed_at: AwareDatetime


class NotePayload(_Payload):
    """What ``outbound.clinical_note`` must produce for an MDM^T02."""

    authored_at: AwareDatetime
    text: str
    title: str | None = None
    author: str | None = None
    document_type: str = "PR"  # HL7 table 0270: progress note
    completion_status: str = "AU"  # HL7 table 0271: authenticated


class RiskAlertPayload(_Payload):
    """What ``outbound.risk_alert`` must produce for an ORU^R01 carrying a risk."""

    risk_code: str = ModelField(min_length=1)
    risk_name: str | None = None
    risk_system: str = "SCT"
    abnormal_flag: Literal["A", "AA"]  # HL7 table 0078, the flags for non-numeric results
    priority: Literal["S", "A", "R"]  # HL7 table 0485 (0027 in 2.4): stat, ASAP, routine
    raised_at: AwareDatetime
    reason_code: str | None = None
    reason_name: str | None = None
    reason_system: str = "L"
    summary: str | None = None
    #: OBR-4 and OBX-3: what the observation is (a local code: no national one is agreed)
    observation_code: str = "RISK-ALERT"
    observation_name: str = "Risk alert"
    observation_system: str = "L"


#: TQ1-9 / OBR-27.6 priority code -> its text in table 0485
PRIORITY_TEXT = {"S": "Stat", "A": "ASAP", "R": "Routine"}


@dataclass(frozen=True)
class Header:
    """MSH-3 to MSH-6 and the version; from the adapter's options."""

    sending_application: str = "EHR-BRIDGE"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    local_id_authority: str = ""  # PID-3.4 for the trust's local patient id
    version: Version = "2.5.1"


def payload_model(kind: str) -> type[_Payload]:
    """The payload model for a write kind; TerminalError for a kind we cannot send."""
    models: dict[str, type[_Payload]] = {
        "assessment": AssessmentPayload,
        "clinical_note": NotePayload,
        "risk_alert": RiskAlertPayload,
    }
    if kind not in models:
        raise TerminalError(f"hl7v2 adapter cannot write items of kind {kind}")
    return models[kind]


def checked(kind: str, payload: dict[str, Any]) -> _Payload:
    """The payload validated for ``kind``; the error names the key, never its value."""
    try:
        return payload_model(kind).model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        key = ".".join(str(p) for p in first["loc"]) or "(payload)"
        raise TerminalError(
            f"{kind} payload key {key}: {first['type']} (check the mapping's outbound section)",
            code="payload",
        ) from None


# --- hl7apy plumbing ---------------------------------------------------------------------
def _put(segment: Segment, number: int, *repetitions: str) -> None:
    """Set ``segment``-``number`` to already-escaped ER7 text, one Field per repetition."""
    name = f"{segment.name}_{number}"
    setattr(segment, name.lower(), repetitions[0])  # replaces any value hl7apy filled in
    for text in repetitions[1:]:
        field = Field(name, version=segment.version)
        field.value = text
        segment.add(field)


def _components(*values: str | None) -> str:
    return "^".join(escape(v) if v else "" for v in values).rstrip("^")


def _message(kind: str, trigger: str, header: Header, control_id: str) -> Message:
    message = Message(kind, version=header.version, validation_level=VALIDATION_LEVEL.TOLERANT)
    msh = message.msh
    for number, value in (
        (3, header.sending_application),
        (4, header.sending_facility),
        (5, header.receiving_application),
        (6, header.receiving_facility),
    ):
        if value:
            _put(msh, number, escape(value))
    _put(msh, 7, hl7_timestamp(datetime.now(UTC)))
    _put(msh, 9, f"{trigger}^{kind}")
    _put(msh, 10, escape(control_id))
    _put(msh, 11, "P")
    _put(msh, 18, "UNICODE UTF-8")
    return message


def _patient(pid: Segment, payload: _Payload, header: Header) -> None:
    """PID-3 with the NHS number (``^^^NHS^NH``) and the trust's id (``^^^<authority>^MR``).

    PID-5 (XPN family^given^further given names) and PID-7 (DT) follow where the mapping
    gave them. Every part is escaped, so a name holding a separator stays one component.
    """
    _put(pid, 1, "1")
    identifiers = []
    if payload.patient_nhs_number:
        identifiers.append(_components(payload.patient_nhs_number, None, None, "NHS", "NH"))
    if payload.patient_local_id:
        authority = header.local_id_authority
        identifiers.append(_components(payload.patient_local_id, None, None, authority, "MR"))
    if identifiers:
        _put(pid, 3, *identifiers)
    given = payload.patient_given_names or []
    if payload.patient_family_name or given:
        middle = " ".join(given[1:]) or None
        _put(pid, 5, _components(payload.patient_family_name, given[0] if given else None, middle))
    if payload.patient_birth_date:
        _put(pid, 7, payload.patient_birth_date.strftime("%Y%m%d"))


def _our_id(control_id: str, header: Header) -> str:
    return _components(control_id, header.sending_application)


# --- ORU^R01 -----------------------------------------------------------------------------
def oru_r01(payload: AssessmentPayload, header: Header) -> str:
    """One total score as an ORU^R01 (OBX-2 NM, OBX-3 the measure, OBX-11 F)."""
    message = _message("ORU_R01", "ORU^R01", header, payload.client_reference)
    result = message.oru_r01_patient_result
    _patient(result.oru_r01_patient.pid, payload, header)
    order = result.oru_r01_order_observation
    measure = _components(payload.tool_code, payload.tool_name, payload.tool_system)
    observed = hl7_timestamp(payload.completed_at)
    _put(order.orc, 1, "RE")
    _put(order.orc, 2, escape(payload.referral_id))
    _put(order.orc, 3, _our_id(payload.client_reference, header))
    for number, value in ((1, "1"), (4, measure), (7, observed), (25, "F")):
        _put(order.obr, number, value)
    _put(order.obr, 2, escape(payload.referral_id))
    _put(order.obr, 3, _our_id(payload.client_reference, header))
    obx = order.oru_r01_observation.obx
    score = f"{payload.score:g}" if isinstance(payload.score, float) else str(payload.score)
    for number, value in ((1, "1"), (2, "NM"), (3, measure), (5, score)):
        _put(obx, number, value)
    for number, value in ((6, "{ScoreOf}^^UCUM"), (11, "F"), (14, observed)):
        _put(obx, number, value)
    return str(message.to_er7()) + "\r"


def oru_r01_risk(payload: RiskAlertPayload, header: Header) -> str:
    """A risk alert as an ORU^R01: a coded OBX with its abnormal flag, the priority, a note."""
    message = _message("ORU_R01", "ORU^R01", header, payload.client_reference)
    result = message.oru_r01_patient_result
    _patient(result.oru_r01_patient.pid, payload, header)
    order = result.oru_r01_order_observation
    what = _components(
        payload.observation_code, payload.observation_name, payload.observation_system
    )
    raised = hl7_timestamp(payload.raised_at)
    _put(order.orc, 1, "RE")
    _put(order.orc, 2, escape(payload.referral_id))
    _put(order.orc, 3, _our_id(payload.client_reference, header))
    for number, value in ((1, "1"), (4, what), (7, raised), (25, "F")):
        _put(order.obr, number, value)
    _put(order.obr, 2, escape(payload.referral_id))
    _put(order.obr, 3, _our_id(payload.client_reference, header))
    _priority(order, payload.priority, header.version)
    observation = order.oru_r01_observation
    obx = observation.obx
    risk = _components(payload.risk_code, payload.risk_name, payload.risk_system)
    value_type = "CE" if header.version == "2.4" else "CWE"
    for number, value in ((1, "1"), (2, value_type), (3, what), (5, risk)):
        _put(obx, number, value)
    for number, value in ((8, payload.abnormal_flag), (11, "F"), (14, raised)):
        _put(obx, number, value)
    if payload.reason_code:
        method = _components(payload.reason_code, payload.reason_name, payload.reason_system)
        _put(obx, 17, method)
    if payload.summary:
        nte = observation.add_segment("NTE")
        _put(nte, 1, "1")
        _put(nte, 2, "L")  # table 0105: the comment comes from the filler (us)
        _put(nte, 3, *escape_lines(payload.summary))
        _put(nte, 4, "RE^Remark^HL70364")  # table 0364 comment type
    return str(message.to_er7()) + "\r"


def _priority(order: Any, priority: str, version: Version) -> None:
    """TQ1-9 (2.5, 2.5.1); OBR-27 component 6 in 2.4, which has no TQ1."""
    if version == "2.4":
        _put(order.obr, 27, "^^^^^" + priority)
        return
    tq1 = order.oru_r01_timing_qty.tq1
    _put(tq1, 1, "1")
    _put(tq1, 9, _components(priority, PRIORITY_TEXT[priority], "HL70485"))


# --- MDM^T02 -----------------------------------------------------------------------------
def mdm_t02(payload: NotePayload, header: Header) -> str:
    """A session note as an MDM^T02: TXA-12 our reference, TXA-17 set, text in OBX-5 lines."""
    message = _message("MDM_T02", "MDM^T02", header, payload.client_reference)
    authored = hl7_timestamp(payload.authored_at)
    _put(message.evn, 1, "T02")
    _put(message.evn, 2, hl7_timestamp(datetime.now(UTC)))
    _patient(message.pid, payload, header)
    _put(message.pv1, 1, "1")
    _put(message.pv1, 2, "O")
    txa = message.txa
    for number, value in ((1, "1"), (2, escape(payload.document_type)), (3, "TX"), (4, authored)):
        _put(txa, number, value)
    _put(txa, 6, authored)
    if payload.author:
        _put(txa, 9, _components(None, payload.author))
    _put(txa, 12, _our_id(payload.client_reference, header))
    _put(txa, 14, escape(payload.referral_id))
    _put(txa, 17, escape(payload.completion_status))
    _put(txa, 19, "AV")
    obx = _note_obx(message, header.version)
    title = _components("11506-3", payload.title or "Progress note", "LN")
    for number, value in ((1, "1"), (2, "TX"), (3, title)):
        _put(obx, number, value)
    _put(obx, 5, *escape_lines(payload.text))
    _put(obx, 11, "F")
    _put(obx, 14, authored)
    return str(message.to_er7()) + "\r"


def _note_obx(message: Message, version: Version) -> Segment:
    """The OBX of an MDM^T02: a bare segment in 2.4, inside a group (renamed in 2.5.1) after."""
    group = {"2.5": "mdm_t02_observation", "2.5.1": "mdm_t02_obxnte_suppgrp"}.get(version)
    holder = getattr(message, group) if group else message
    obx: Segment = holder.obx
    return obx


BUILDERS: dict[str, Callable[[Any, Header], str]] = {
    "assessment": oru_r01,
    "clinical_note": mdm_t02,
    "risk_alert": oru_r01_risk,
}


def build(kind: str, payload: dict[str, Any], header: Header) -> tuple[str, str]:
    """(control id, ER7 text) for one write item's payload."""
    model = checked(kind, payload)
    return model.client_reference, BUILDERS[kind](model, header)


def kinds() -> Sequence[str]:
    """The write kinds this adapter can send."""
    return tuple(BUILDERS)
