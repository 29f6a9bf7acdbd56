"""Load the read model from the store: one referral at a time, notes counted and dropped.

The store keeps every FHIR resource as JSON. ``load_episodes`` walks a connection's
referrals one by one, reads that referral's resources, and builds an ``Episode``. A note is
decoded only to count the configured phrases and is gone before the next referral is read,
so memory holds one referral's notes at most and the model never holds any text.

Resources were validated when they were collected, but a report must not fail on one odd
row: a resource that cannot be read is skipped and logged by type and id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any

from ehr_bridge.domain import codes
from ehr_bridge.domain.measures import measure_for_code
from ehr_bridge.domain.validate import note_text
from ehr_bridge.errors import RecordValidationError
from ehr_bridge.reports.governance import count_phrases
from ehr_bridge.reports.model import Episode, Score, Session
from ehr_bridge.store import Store

log = logging.getLogger(__name__)
JsonDict = dict[str, Any]
_UNUSABLE_STATUSES = frozenset({"entered-in-error", "cancelled"})


def load_episodes(store: Store, connection: str, phrases: Sequence[str] = ()) -> Iterator[Episode]:
    """Every referral of ``connection`` as an Episode, oldest first, one read per referral."""
    for referral in store.list_referrals(connection):
        resources = store.resources_for_referral(referral.id)
        episode = episode_from_resources(
            referral.id, referral.trust_referral_id, resources, phrases
        )
        if episode is not None:
            yield episode


def episode_from_resources(
    referral_id: str,
    trust_referral_id: str,
    resources: Iterable[JsonDict],
    phrases: Sequence[str] = (),
) -> Episode | None:
    """Build one Episode from a referral's resources; None without its ServiceRequest."""
    by_type: dict[str, list[JsonDict]] = {}
    for resource in resources:
        by_type.setdefault(str(resource.get("resourceType")), []).append(resource)
    request = next(
        (r for r in by_type.get("ServiceRequest", []) if r.get("id") == referral_id), None
    )
    received = _day(request.get("authoredOn")) if request else None
    if request is None or received is None:
        log.warning("referral without a readable ServiceRequest", extra={"referral": referral_id})
        return None
    notes = _note_hits(by_type.get("DocumentReference", []), phrases)
    ended, end_code = _episode_end(by_type.get("EpisodeOfCare", []))
    return Episode(
        referral_id=referral_id,
        trust_referral_id=trust_referral_id,
        received=received,
        presenting_problem=_presenting_problem(request),
        sessions=_sessions(by_type.get("Encounter", []), notes),
        scores=_scores(by_type.get("Observation", [])),
        ended=ended,
        end_code=end_code,
    )


def _day(value: Any) -> date | None:
    """The calendar day of a FHIR date or dateTime string (its own local date)."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _instant(value: Any) -> datetime | None:
    """A FHIR dateTime with its offset; None when missing or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _presenting_problem(request: JsonDict) -> str | None:
    """The ICD-10 code in ServiceRequest.reasonCode, if any."""
    for concept in request.get("reasonCode") or []:
        for coding in concept.get("coding") or []:
            if coding.get("system") == codes.ICD10 and coding.get("code"):
                return str(coding["code"])
    return None


def _coding_code(codings: Iterable[JsonDict], system: str) -> str | None:
    """The code of the first coding in ``system``."""
    return next(
        (str(c["code"]) for c in codings if c.get("system") == system and "code" in c), None
    )


def _sessions(
    encounters: Iterable[JsonDict], notes: dict[str, list[dict[str, int]]]
) -> tuple[Session, ...]:
    """Encounters as Sessions, in time order, each with its notes' phrase counts."""
    sessions = []
    for encounter in encounters:
        start = _instant((encounter.get("period") or {}).get("start"))
        if start is None or start.tzinfo is None:
            log.warning("encounter without a usable start", extra={"resource": encounter.get("id")})
            continue
        sessions.append(_session(encounter, start, notes.get(str(encounter.get("id")), [])))
    return tuple(sorted(sessions, key=lambda s: s.start))


def _session(encounter: JsonDict, start: datetime, notes: list[dict[str, int]]) -> Session:
    """One Encounter as a Session."""
    extensions = encounter.get("extension") or []
    attendance = next(
        (
            (e.get("valueCoding") or {}).get("code")
            for e in extensions
            if e.get("url") == codes.ATTENDANCE_EXTENSION
        ),
        None,
    )
    type_codings = [c for t in encounter.get("type") or [] for c in t.get("coding") or []]
    participants = encounter.get("participant") or []
    therapist = next(
        (
            p["individual"]["display"]
            for p in participants
            if (p.get("individual") or {}).get("display")
        ),
        None,
    )
    return Session(
        id=str(encounter.get("id")),
        start=start,
        appointment_type=_coding_code(type_codings, codes.DATASET_APPOINTMENT_TYPE),
        attendance=attendance,
        therapist=therapist,
        notes=tuple(notes),
    )


def _scores(observations: Iterable[JsonDict]) -> tuple[Score, ...]:
    """Total-score Observations of any known measure, with their completion time."""
    scores = []
    for observation in observations:
        if observation.get("status") in _UNUSABLE_STATUSES:
            continue
        measure = next(
            (
                found
                for c in (observation.get("code") or {}).get("coding") or []
                if (found := measure_for_code(str(c.get("system")), str(c.get("code"))))
            ),
            None,
        )
        value = (observation.get("valueQuantity") or {}).get("value")
        at = _instant(observation.get("effectiveDateTime"))
        if measure is None or not isinstance(value, int | float) or at is None:
            log.warning("observation skipped", extra={"resource": observation.get("id")})
            continue
        scores.append(Score(measure=measure.key, value=value, at=at))
    return tuple(sorted(scores, key=lambda s: s.at))


def _note_hits(
    documents: Iterable[JsonDict], phrases: Sequence[str]
) -> dict[str, list[dict[str, int]]]:
    """Phrase counts per encounter id, one mapping per note; the text is dropped here."""
    hits: dict[str, list[dict[str, int]]] = {}
    for document in documents:
        if document.get("status") == "entered-in-error":
            continue
        encounters = (document.get("context") or {}).get("encounter") or [{}]
        reference = str(encounters[0].get("reference", ""))
        encounter_id = reference.rsplit("/", 1)[-1]
        try:
            counts = count_phrases(note_text(document), phrases)
        except RecordValidationError:
            log.warning("note not readable", extra={"resource": document.get("id")})
            continue
        hits.setdefault(encounter_id, []).append(counts)
    return hits


def _episode_end(episodes: Iterable[JsonDict]) -> tuple[date | None, str | None]:
    """The latest EpisodeOfCare end date and its EndCode."""
    latest: tuple[date | None, str | None] = (None, None)
    for episode in episodes:
        if episode.get("status") != "finished":
            continue
        end = _day((episode.get("period") or {}).get("end"))
        if end is None or (latest[0] is not None and end <= latest[0]):
            continue
        end_code = next(
            (
                (e.get("valueCoding") or {}).get("code")
                for e in episode.get("extension") or []
                if e.get("url") == codes.END_CODE_EXTENSION
            ),
            None,
        )
        latest = (end, end_code)
    return latest
