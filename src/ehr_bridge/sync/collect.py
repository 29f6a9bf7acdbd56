"""Collect: store the provider's session bundles and queue their write-backs, together.

Each write-back gets a deterministic key (connection, kind, resource id), which is also
the client reference the trust stores; a bundle offered twice queues nothing new.
A bundle that fails validation is quarantined whole (never partly written back) and
acknowledged, so it does not block the ones behind it.

Bundles are taken in batches of up to ``BATCH_SIZE``; one batch is one transaction.
Every bundle of a batch is stored (or quarantined), its write-backs queued and its
receipt recorded in that transaction, and only after the commit is each one
acknowledged, in the order offered. A crash between commit and acknowledge leaves the
bundles offered again, and their receipts (by content hash) make them "already stored":
acknowledged, never stored twice. While one batch is written, the next is checked,
in worker processes when the backlog is large (``bundle_checks``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ehr_bridge.adapters.base import ProviderSubmission
from ehr_bridge.domain.codes import END_CODE_EXTENSION
from ehr_bridge.domain.ids import artefact_key
from ehr_bridge.domain.validate import SessionArtefacts, questionnaire_items
from ehr_bridge.errors import RecordError, RecordValidationError
from ehr_bridge.store import NewOutboxItem, NewQuarantine, Store, content_hash
from ehr_bridge.store.submissions import CollectedBundle, ReferralOwner
from ehr_bridge.sync.bundle_checks import (
    BundleChecker,
    PendingVerdicts,
    Refusal,
    Verdict,
    check_bundle,
)
from ehr_bridge.sync.connection import Connection

log = logging.getLogger(__name__)
JsonDict = dict[str, Any]

#: bundles per transaction: a commit costs about one bundle's writes; two batches in hand
#: (one written, one checked) hold about 25 MB at 100
BATCH_SIZE = 100


@dataclass
class CollectCounts:
    """What one collect run did."""

    submissions: int = 0
    stored: int = 0
    already_stored: int = 0
    quarantined: int = 0
    queued: int = 0


@dataclass(frozen=True)
class _Batch:
    """Submissions taken together: all acknowledged after one commit, in this order."""

    taken: list[ProviderSubmission]
    #: the bundles not stored before, with their content hashes, in offer order
    new: list[tuple[ProviderSubmission, str]]
    verdicts: PendingVerdicts


def collect(
    conn: Connection,
    store: Store,
    stop: threading.Event | None = None,
    *,
    workers: int | None = None,
    batch_size: int = BATCH_SIZE,
) -> CollectCounts:
    """Store every pending provider submission, then acknowledge it.

    Batch k+1 is read and handed to the checker before batch k is written, so checking
    and writing overlap; at most two batches are in memory. ``stop`` ends the run after
    the batches in hand are committed and acknowledged. ``workers`` is the size of the
    checking pool for a large backlog (None: ``EHR_BRIDGE_COLLECT_WORKERS``, else up to
    two, one per core; 0 or 1: no pool).
    """
    counts = CollectCounts()
    with BundleChecker(workers) as checker:
        in_hand: _Batch | None = None
        for taken in _batches(conn.provider.pending_submissions(), batch_size, stop):
            batch = _open_batch(conn, store, taken, checker, counts, in_hand)
            if in_hand is not None:
                _finish_batch(conn, store, in_hand, counts)
            in_hand = batch
        if in_hand is not None:
            _finish_batch(conn, store, in_hand, counts)
    return counts


def _batches(
    submissions: Iterable[ProviderSubmission], size: int, stop: threading.Event | None
) -> Iterator[list[ProviderSubmission]]:
    """Submissions in lists of up to ``size``; a handle seen twice starts a new list.

    One handle per batch keeps its quarantine entries in offer order (a batch closes the
    entries of its stored handles before adding its new ones).
    """
    batch: list[ProviderSubmission] = []
    handles: set[str] = set()
    for submission in submissions:
        if stop is not None and stop.is_set():
            break
        if len(batch) >= size or submission.handle in handles:
            yield batch
            batch, handles = [], set()
        batch.append(submission)
        handles.add(submission.handle)
    if batch:
        yield batch


def _open_batch(
    conn: Connection,
    store: Store,
    taken: list[ProviderSubmission],
    checker: BundleChecker,
    counts: CollectCounts,
    in_hand: _Batch | None,
) -> _Batch:
    """Skip what is stored already (or earlier in this run) and start checking the rest."""
    hashes = [content_hash(submission.bundle) for submission in taken]
    seen = store.stored_submissions(conn.name, hashes)
    if in_hand is not None:  # not committed yet, but will be before this batch is
        seen.update(bundle_hash for _, bundle_hash in in_hand.new)
    new: list[tuple[ProviderSubmission, str]] = []
    for submission, bundle_hash in zip(taken, hashes, strict=True):
        counts.submissions += 1
        if bundle_hash in seen:
            counts.already_stored += 1
            continue
        seen.add(bundle_hash)
        new.append((submission, bundle_hash))
    verdicts = checker.submit([submission.bundle for submission, _ in new])
    return _Batch(taken, new, verdicts)


def _finish_batch(conn: Connection, store: Store, batch: _Batch, counts: CollectCounts) -> None:
    """Commit the batch's bundles together, then acknowledge every one taken."""
    verdicts = batch.verdicts.result()
    owners = store.referral_owners(
        [v.service_request_id for v in verdicts if isinstance(v, SessionArtefacts)]
    )
    records = [
        _record(conn, store, submission, bundle_hash, verdict, owners)
        for (submission, bundle_hash), verdict in zip(batch.new, verdicts, strict=True)
    ]
    store.save_submissions(conn.name, records)
    for record in records:
        _count(conn, record, counts)
    for submission in batch.taken:
        conn.provider.acknowledge(submission.handle)


def _record(
    conn: Connection,
    store: Store,
    submission: ProviderSubmission,
    bundle_hash: str,
    verdict: Verdict,
    owners: dict[str, ReferralOwner],
) -> CollectedBundle:
    """What to store for one checked bundle: its artefacts, or its quarantine entry."""
    if isinstance(verdict, SessionArtefacts):
        refusal = _referral_refusal(conn, store, verdict, owners.get(verdict.service_request_id))
        if refusal is None:
            return _stored_record(conn, submission.handle, bundle_hash, verdict)
        verdict = refusal
    error = verdict.error()
    entry = NewQuarantine(
        source="submission",
        record_ref=submission.handle,
        code=error.code,
        reason=error.safe_message,
        field=error.field,
        payload=submission.bundle,
    )
    return CollectedBundle(submission.handle, bundle_hash, None, quarantine=entry)


def _stored_record(
    conn: Connection, handle: str, bundle_hash: str, artefacts: SessionArtefacts
) -> CollectedBundle:
    outbox = [item for item in outbox_items(conn.name, artefacts) if conn.writes(item.kind)]
    resources = [
        *artefacts.encounters,
        *artefacts.questionnaire_responses,
        *artefacts.observations,
        *artefacts.documents,
        *artefacts.episode_ends,
    ]
    return CollectedBundle(handle, bundle_hash, artefacts.service_request_id, resources, outbox)


def _count(conn: Connection, record: CollectedBundle, counts: CollectCounts) -> None:
    """Count and log a committed bundle (ids, codes and numbers only)."""
    if record.quarantine is not None:
        counts.quarantined += 1
        log.warning(
            "submission quarantined",
            extra={
                "connection": conn.name,
                "code": record.quarantine.code,
                "field": record.quarantine.field,
            },
        )
        return
    counts.stored += 1
    counts.queued += len(record.outbox)
    log.info(
        "submission stored",
        extra={
            "connection": conn.name,
            "referral": record.referral_id,
            "queued": len(record.outbox),
        },
    )


def _referral_refusal(
    conn: Connection, store: Store, artefacts: SessionArtefacts, owner: ReferralOwner | None
) -> Refusal | None:
    """Why a well-formed bundle still cannot be this connection's, if it cannot."""
    if owner is None or owner.connection != conn.name:
        error = RecordValidationError(
            "refers to a referral this connection never delivered",
            field="basedOn",
            code="unknown_referral",
        )
    elif owner.patient_id != artefacts.patient_id and not store.had_patient(
        artefacts.service_request_id, artefacts.patient_id
    ):  # a session of the referral's patient from before a merge is still this referral's
        error = RecordValidationError(
            "subject is not the referral's patient", field="subject", code="patient_mismatch"
        )
    else:
        return None
    return Refusal(error.code, error.reason, error.field)


def collect_again(
    conn: Connection, store: Store, handle: str, bundle: JsonDict
) -> RecordError | None:
    """Check and store a quarantined provider bundle again (`quarantine retry`).

    Useful when what stopped it has changed on our side: its referral is now pulled, or
    its patient was merged. Returns the error when it still fails (nothing is stored, the
    entry stays open); on success its write-backs are queued and the entry is resolved.
    """
    verdict = check_bundle(bundle)
    if isinstance(verdict, SessionArtefacts):
        owners = store.referral_owners([verdict.service_request_id])
        owner = owners.get(verdict.service_request_id)
        refusal = _referral_refusal(conn, store, verdict, owner)
        if refusal is None:
            record = _stored_record(conn, handle, content_hash(bundle), verdict)
            store.save_submissions(conn.name, [record])
            return None
        verdict = refusal
    return verdict.error()


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
