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

A score is queued only once its items are checked; when they come in another bundle it
is held until they do (``score_items``), and that bundle's transaction queues or
quarantines it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ehr_bridge.adapters.base import ProviderSubmission, RejectingProvider
from ehr_bridge.domain.codes import END_CODE_EXTENSION
from ehr_bridge.domain.ids import artefact_key
from ehr_bridge.domain.validate import SessionArtefacts, questionnaire_items
from ehr_bridge.errors import RecordError, RecordValidationError
from ehr_bridge.retry import current_scope
from ehr_bridge.store import NewOutboxItem, NewQuarantine, Store, content_hash, engine_actor
from ehr_bridge.store.submissions import CollectedBundle, ReferralOwner
from ehr_bridge.sync.bundle_checks import (
    BundleChecker,
    PendingVerdicts,
    Refusal,
    Verdict,
    check_bundle,
)
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.risk_items import bundle_risks, quarantined_risk, quarantined_risk_id
from ehr_bridge.sync.score_items import (
    BatchScores,
    ScorePlan,
    assessment_item,
    contact_key,
    ref_id,
)

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
    #: scores stored but held until their items are collected
    held: int = 0
    #: held scores whose items, once collected, disagreed (quarantined on their own)
    scores_refused: int = 0
    #: risk events raised (each followed until the trust acknowledges it)
    risks: int = 0


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
    and writing overlap; at most two batches are in memory. ``stop`` (or the run's
    deadline) ends the run after the batches in hand are committed and acknowledged.
    ``workers`` is the size of the checking pool for a large backlog (None:
    ``EHR_BRIDGE_COLLECT_WORKERS``, else up to two, one per core; 0 or 1: no pool).
    """
    return _collect(conn, store, stop, workers, batch_size)


def collect_if_free(conn: Connection, store: Store, stop: threading.Event | None) -> CollectCounts:
    """Collect unless another collect of this connection runs (it queues the risks too).

    The order is the routine collect's (``cycle.run_flow``): this process's collect lock,
    then the flow lease shared with other daemons, so neither ever gives up the other's.
    """
    if not conn.collect_lock.acquire(blocking=False):
        return CollectCounts()
    try:
        if not store.take_flow_lease(conn.name, "collect", conn.owner, conn.lease_seconds):
            return CollectCounts()  # another daemon is collecting
        try:
            return _collect(conn, store, stop, None, BATCH_SIZE)
        finally:
            store.release_flow_lease(conn.name, "collect", conn.owner)
    finally:
        conn.collect_lock.release()


def _collect(
    conn: Connection,
    store: Store,
    stop: threading.Event | None,
    workers: int | None,
    batch_size: int,
) -> CollectCounts:
    counts = CollectCounts()
    with BundleChecker(workers, adsm_enabled=conn.adsm_enabled) as checker:
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
        if current_scope().expired():
            log.warning("collect reached its deadline: the rest waits for the next run")
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
    hashes = [_submission_hash(submission) for submission in taken]
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
    artefacts = [v for v in verdicts if isinstance(v, SessionArtefacts)]
    owners = store.referral_owners([a.service_request_id for a in artefacts])
    scores = BatchScores.load(conn, store, artefacts)
    records = [
        _record(
            conn, store, submission.handle, bundle_hash, submission.bundle, verdict, owners, scores
        )
        for (submission, bundle_hash), verdict in zip(batch.new, verdicts, strict=True)
    ]
    store.save_submissions(conn.name, records)
    for record in records:
        _count(conn, record, counts)
    provider = conn.provider
    for submission in batch.taken:
        if _unreadable(submission.bundle) and isinstance(provider, RejectingProvider):
            provider.reject(submission.handle)  # quarantined above: kept apart for operators
        else:
            provider.acknowledge(submission.handle)


def _submission_hash(submission: ProviderSubmission) -> str:
    """The content hash a submission is known by; an unreadable one's includes its handle.

    Two unreadable files carry the same placeholder (``{"_unreadable": "not_json"}``):
    by content alone the second would look stored already and never be quarantined.
    """
    bundle = submission.bundle
    if _unreadable(bundle):
        return content_hash({**bundle, "_handle": submission.handle})
    return content_hash(bundle)


def _unreadable(bundle: JsonDict) -> bool:
    """The provider could not read this file (``bundle_checks``' ``_unreadable`` placeholder)."""
    return bool(bundle.get("_unreadable"))


def _record(
    conn: Connection,
    store: Store,
    handle: str,
    bundle_hash: str,
    bundle: JsonDict,
    verdict: Verdict,
    owners: dict[str, ReferralOwner],
    scores: BatchScores,
) -> CollectedBundle:
    """What to store for one checked bundle: its artefacts, or its quarantine entry."""
    accepted = _accepted(conn, store, bundle, verdict, owners, scores)
    if isinstance(accepted, Refusal):
        error = accepted.error()
        entry = NewQuarantine(
            source="submission",
            record_ref=handle,
            code=error.code,
            reason=error.safe_message,
            field=error.field,
            payload=bundle,
        )
        risk = quarantined_risk(conn, store, bundle, bundle_hash)
        risks = [risk] if risk is not None else []
        return CollectedBundle(handle, bundle_hash, None, quarantine=entry, risks=risks)
    artefacts, plan = accepted
    scores.commit(artefacts, plan)
    return _stored_record(conn, handle, bundle_hash, artefacts, plan)


def _accepted(
    conn: Connection,
    store: Store,
    bundle: JsonDict,
    verdict: Verdict,
    owners: dict[str, ReferralOwner],
    scores: BatchScores,
) -> tuple[SessionArtefacts, ScorePlan] | Refusal:
    """The bundle's artefacts and score plan, or why it is refused whole."""
    if not isinstance(verdict, SessionArtefacts):
        return verdict
    owner = owners.get(verdict.service_request_id)
    refusal = _referral_refusal(conn, store, verdict, owner)
    if refusal is not None:
        return refusal
    plan = scores.plan(verdict, bundle)
    if isinstance(plan, Refusal):
        return plan
    return verdict, plan


def _stored_record(
    conn: Connection, handle: str, bundle_hash: str, artefacts: SessionArtefacts, plan: ScorePlan
) -> CollectedBundle:
    items = outbox_items(conn.name, artefacts, plan)
    risks = bundle_risks(conn, artefacts)
    resources = [
        *artefacts.encounters,
        *artefacts.questionnaire_responses,
        *artefacts.observations,
        *artefacts.documents,
        *artefacts.episode_ends,
        *artefacts.risks,
        *risks.flags,
    ]
    return CollectedBundle(
        handle,
        bundle_hash,
        artefacts.service_request_id,
        resources,
        [*risks.outbox, *(item for item in items if conn.writes(item.kind))],
        holds=plan.holds,
        unheld=plan.unheld,
        checked_scores=plan.checked,
        refused_scores=plan.refused,
        risks=risks.events,
    )


def _count(conn: Connection, record: CollectedBundle, counts: CollectCounts) -> None:
    """Count and log a committed bundle (ids, codes and numbers only)."""
    counts.risks += len(record.risks)
    for risk in record.risks:
        log.warning(
            "risk raised",
            extra={"connection": conn.name, "risk": risk.id, "level": risk.level},
        )
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
    counts.held += len(record.holds)
    counts.scores_refused += len(record.refused_scores)
    log.info(
        "submission stored",
        extra={
            "connection": conn.name,
            "referral": record.referral_id,
            "queued": len(record.outbox),
            "held": len(record.holds),
        },
    )
    for entry in record.refused_scores:
        log.warning(
            "held score quarantined",
            extra={
                "connection": conn.name,
                "observation": entry.record_ref,
                "code": entry.code,
                "field": entry.field,
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
    its patient was merged, or the items it waited for are now stored. A held score's
    entry (source ``score``) holds the score and its items as a bundle and is checked
    the same way. Returns the error when it still fails (nothing is stored, the entry
    stays open); on success its write-backs are queued and the entry is resolved.
    """
    verdict = check_bundle(bundle, adsm_enabled=conn.adsm_enabled)
    batch = [verdict] if isinstance(verdict, SessionArtefacts) else []
    owners = store.referral_owners([a.service_request_id for a in batch])
    scores = BatchScores.load(conn, store, batch)
    accepted = _accepted(conn, store, bundle, verdict, owners, scores)
    if isinstance(accepted, Refusal):
        return accepted.error()
    record = _stored_record(conn, handle, content_hash(bundle), *accepted)
    store.save_submissions(conn.name, [record])
    _close_quarantined_risk(conn, store, content_hash(bundle))
    return None


def _close_quarantined_risk(conn: Connection, store: Store, bundle_hash: str) -> None:
    """End a refused bundle's risk event once the bundle is stored.

    Its risks are then followed as risks of their own, queued with the bundle just stored.
    """
    risk_id = quarantined_risk_id(conn, bundle_hash)
    if any(view.id == risk_id and view.open for view in store.risks(conn.name)):
        reason = "the bundle was stored on retry; its risks are followed on their own"
        store.resolve_risk(risk_id, actor=engine_actor(conn.owner), reason=reason)


def outbox_items(
    connection: str, artefacts: SessionArtefacts, plan: ScorePlan | None = None
) -> list[NewOutboxItem]:
    """The write-backs a bundle implies: contact first, then its note and scores.

    With a ``plan``, scores it holds are left out, scores checked against stored items
    carry those items, and the held scores it releases follow the bundle's own.
    """
    plan = plan or ScorePlan()
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
        encounter = ref_id(doc.get("context", {}).get("encounter", [{}])[0])
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
    held = plan.held_ids
    for obs in artefacts.observations:
        if obs["id"] in held:
            continue
        derived = [ref_id(d) for d in obs.get("derivedFrom", [])]
        answers = next(
            (questionnaire_items(responses[d]) for d in derived if d in responses),
            plan.items.get(obs["id"]),
        )
        depends_on = contact_key(connection, obs, set(contact_keys))
        items.append(assessment_item(connection, referral_id, obs, depends_on, answers))
    items.extend(plan.released)
    items.extend(_discharges(connection, referral_id, artefacts.episode_ends))
    return items


def _discharge_day(end: str) -> str:
    """ServDischDate is a date: an end sent as a full date-time counts on its London day."""
    if "T" not in end:
        return end
    return datetime.fromisoformat(end).astimezone(ZoneInfo("Europe/London")).date().isoformat()


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
                    "date": _discharge_day(episode["period"]["end"]),
                    "end_code": end_code,
                },
            )
        )
    return result
