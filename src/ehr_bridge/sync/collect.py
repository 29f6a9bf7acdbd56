"""Collect: store the provider's session bundles and queue their write-backs, together.

Each write-back gets a deterministic key (connection, kind, resource id), which is also
the client reference the trust stores; a bundle offered twice queues nothing new.
A bundle that fails validation is quarantined whole (never partly written back) and
acknowledged, so it does not block the ones behind it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ehr_bridge.adapters.base import ProviderSubmission
from ehr_bridge.domain.codes import END_CODE_EXTENSION
from ehr_bridge.domain.ids import artefact_key
from ehr_bridge.domain.validate import SessionArtefacts, parse_session_bundle, questionnaire_items
from ehr_bridge.errors import EhrBridgeError, RecordError, RecordValidationError
from ehr_bridge.store import NewOutboxItem, NewQuarantine, Store, content_hash
from ehr_bridge.sync.connection import Connection

log = logging.getLogger(__name__)
JsonDict = dict[str, Any]


@dataclass
class CollectCounts:
    """What one collect run did."""

    submissions: int = 0
    stored: int = 0
    already_stored: int = 0
    quarantined: int = 0
    queued: int = 0


def collect(conn: Connection, store: Store, stop: threading.Event | None = None) -> CollectCounts:
    """Store every pending provider submission, then acknowledge it."""
    counts = CollectCounts()
    for submission in conn.provider.pending_submissions():
        if stop and stop.is_set():
            break
        counts.submissions += 1
        _collect_one(conn, store, submission, counts)
        conn.provider.acknowledge(submission.handle)
    return counts


def _collect_one(
    conn: Connection, store: Store, submission: ProviderSubmission, counts: CollectCounts
) -> None:
    bundle_hash = content_hash(submission.bundle)
    if store.submission_stored(conn.name, bundle_hash):
        counts.already_stored += 1
        return
    try:
        artefacts = _checked(conn, store, submission.bundle)
    except RecordError as exc:
        error = exc
    except (EhrBridgeError, SQLAlchemyError, OSError):
        raise  # infrastructure, not the bundle
    except Exception as exc:  # a shape nobody foresaw: quarantine it, keep going
        error = RecordError(f"unexpected {type(exc).__name__}", code="internal_error")
    else:
        _store(conn, store, submission, bundle_hash, artefacts, counts)
        return
    counts.quarantined += 1
    entry = NewQuarantine(
        source="submission",
        record_ref=submission.handle,
        code=error.code,
        reason=error.safe_message,
        field=error.field,
        payload=submission.bundle,
    )
    store.save_submission(conn.name, submission.handle, bundle_hash, None, [], [], entry)
    log.warning(
        "submission quarantined",
        extra={"connection": conn.name, "code": error.code, "field": error.field},
    )


def collect_again(
    conn: Connection, store: Store, handle: str, bundle: JsonDict
) -> RecordError | None:
    """Check and store a quarantined provider bundle again (`quarantine retry`).

    Useful when what stopped it has changed on our side: its referral is now pulled, or
    its patient was merged. Returns the error when it still fails (nothing is stored, the
    entry stays open); on success its write-backs are queued and the entry is resolved.
    """
    try:
        artefacts = _checked(conn, store, bundle)
    except RecordError as exc:
        return exc
    counts = CollectCounts()
    _store(conn, store, ProviderSubmission(handle, bundle), content_hash(bundle), artefacts, counts)
    return None


def _store(
    conn: Connection,
    store: Store,
    submission: ProviderSubmission,
    bundle_hash: str,
    artefacts: SessionArtefacts,
    counts: CollectCounts,
) -> None:
    outbox = [item for item in outbox_items(conn.name, artefacts) if conn.writes(item.kind)]
    resources = [
        *artefacts.encounters,
        *artefacts.questionnaire_responses,
        *artefacts.observations,
        *artefacts.documents,
        *artefacts.episode_ends,
    ]
    store.save_submission(
        conn.name, submission.handle, bundle_hash, artefacts.service_request_id, resources, outbox
    )
    counts.stored += 1
    counts.queued += len(outbox)
    log.info(
        "submission stored",
        extra={
            "connection": conn.name,
            "referral": artefacts.service_request_id,
            "queued": len(outbox),
        },
    )


def _checked(conn: Connection, store: Store, bundle: JsonDict) -> SessionArtefacts:
    unreadable = bundle.get("_unreadable")
    if unreadable:
        raise RecordValidationError(
            f"file unreadable ({unreadable})", field="(file)", code="unreadable"
        )
    artefacts = parse_session_bundle(bundle)
    referral = store.referral(artefacts.service_request_id)
    if referral is None or referral.connection != conn.name:
        raise RecordValidationError(
            "refers to a referral this connection never delivered",
            field="basedOn",
            code="unknown_referral",
        )
    if referral.patient_id != artefacts.patient_id and not store.had_patient(
        referral.id, artefacts.patient_id
    ):  # a session of the referral's patient from before a merge is still this referral's
        raise RecordValidationError(
            "subject is not the referral's patient", field="subject", code="patient_mismatch"
        )
    return artefacts


def outbox_items(connection: str, artefacts: SessionArtefacts) -> list[NewOutboxItem]:
    """The write-backs a bundle implies: contact first, then its note and scores."""
    referral_id = artefacts.service_request_id
    contact_keys = {
        enc["id"]: artefact_key(connection, "care_contact", enc["id"])
        for enc in artefacts.encounters
    }
    items = [
        NewOutboxItem(contact_keys[enc["id"]], referral_id, "care_contact", "Encounter", enc["id"])
        for enc in artefacts.encounters
    ]
    for doc in artefacts.documents:
        encounter = _ref_id(doc.get("context", {}).get("encounter", [{}])[0])
        items.append(
            NewOutboxItem(
                artefact_key(connection, "clinical_note", doc["id"]),
                referral_id,
                "clinical_note",
                "DocumentReference",
                doc["id"],
                depends_on=contact_keys.get(encounter or ""),
            )
        )
    responses = {qr["id"]: qr for qr in artefacts.questionnaire_responses}
    for obs in artefacts.observations:
        derived = [_ref_id(d) for d in obs.get("derivedFrom", [])]
        items_answers = next(
            (questionnaire_items(responses[d]) for d in derived if d in responses), None
        )
        items.append(
            NewOutboxItem(
                artefact_key(connection, "assessment", obs["id"]),
                referral_id,
                "assessment",
                "Observation",
                obs["id"],
                depends_on=contact_keys.get(_ref_id(obs.get("encounter", {})) or ""),
                context={"items": items_answers} if items_answers is not None else {},
            )
        )
    items.extend(_discharges(connection, referral_id, artefacts.episode_ends))
    return items


def _discharges(connection: str, referral_id: str, episodes: list[JsonDict]) -> list[NewOutboxItem]:
    result = []
    for episode in episodes:
        end_code = next(
            (
                e["valueCoding"]["code"]
                for e in episode.get("extension", [])
                if e.get("url") == END_CODE_EXTENSION
            ),
            None,
        )
        result.append(
            NewOutboxItem(
                artefact_key(connection, "referral_status", "discharged", referral_id),
                referral_id,
                "referral_status",
                "EpisodeOfCare",
                episode["id"],
                # a discharged referral is closed at the trust: "accepted" must land first
                depends_on=artefact_key(connection, "referral_status", "accepted", referral_id),
                context={
                    "status": "discharged",
                    "date": episode["period"]["end"],
                    "end_code": end_code,
                },
            )
        )
    return result


def _ref_id(reference: JsonDict) -> str | None:
    """The id from ``Kind/id`` or ``urn:uuid:id``."""
    text = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(text, str):
        return None
    return text.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
