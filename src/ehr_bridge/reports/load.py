"""Load the read model from the store: one referral at a time, notes counted and dropped.

The store keeps every FHIR resource as JSON. ``load_episodes`` walks a connection's
referrals one by one, reads that referral's resources, and builds an ``Episode``. A note is
decoded only to count the configured phrases and is gone before the next referral is read,
so memory holds one referral's notes at most and the model never holds any text.

Resources were validated when they were collected, but by the rules of their day: a store
may hold any date/time form FHIR allows, ICD-10 written either way, decimal totals. Every
time goes through ``reports.times`` (always aware, never a naive/aware mix), and a
resource that still cannot be used is never dropped silently: it is logged by type and id
and listed on its Episode (``unreadable``), which the reports count as data quality.

A total score held by collect until its item answers arrive (``store.held_scores``) is
stored but unchecked: it is left out of every figure and only counted on its Episode
(``awaiting_items``), so an outcome never rests on a total whose items may disagree. Once
the items arrive and agree the hold ends and the score counts; if they disagree collect
removes the score. The held ids are read once per connection, not per referral.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import date
from typing import Any

from ehr_bridge.domain import codes
from ehr_bridge.domain.measures import measure_for_code
from ehr_bridge.domain.validate import note_text
from ehr_bridge.errors import RecordValidationError
from ehr_bridge.reports.governance import count_phrases
from ehr_bridge.reports.model import Episode, Score, Session, Unreadable, problem_code
from ehr_bridge.reports.times import When, read_when
from ehr_bridge.store import Store

log = logging.getLogger(__name__)
JsonDict = dict[str, Any]
_UNUSABLE_STATUSES = frozenset({"entered-in-error", "cancelled"})
#: Observation.effective[x] forms that carry a time, in the order they are tried
_EFFECTIVE = ("effectiveDateTime", "effectiveInstant")


class _Found:
    """What one referral's loading could not use, collected as it goes."""

    def __init__(self) -> None:
        self.unreadable: list[Unreadable] = []
        self.imprecise: list[str] = []
        self.awaiting_items = 0

    def skip(self, resource: JsonDict, field: str) -> None:
        """Record (and log, by type and id only) a resource the reports cannot use."""
        ref = _reference(resource)
        log.warning("resource not usable in reports", extra={"resource": ref, "field": field})
        self.unreadable.append(Unreadable(ref, field))

    def dated(self, resource: JsonDict, when: When) -> None:
        """Note a resource dated to a year or month only."""
        if not when.has_day:
            self.imprecise.append(_reference(resource))


def _reference(resource: JsonDict) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def load_episodes(
    store: Store,
    connection: str,
    phrases: Sequence[str] = (),
    skipped: list[Unreadable] | None = None,
) -> Iterator[Episode]:
    """Every referral of ``connection`` as an Episode, oldest first, one read per referral.

    A referral whose ServiceRequest cannot be read gives no Episode; it is appended to
    ``skipped`` (when given) so the reports can still count it.
    """
    held = frozenset(hold.observation_id for hold in store.held_scores(connection))
    for referral in store.list_referrals(connection):
        resources = store.resources_for_referral(referral.id)
        episode = episode_from_resources(
            referral.id, referral.trust_referral_id, resources, phrases, held=held
        )
        if episode is not None:
            yield episode
        elif skipped is not None:
            skipped.append(Unreadable(f"ServiceRequest/{referral.id}", "authoredOn"))


def episode_from_resources(
    referral_id: str,
    trust_referral_id: str,
    resources: Iterable[JsonDict],
    phrases: Sequence[str] = (),
    *,
    held: Collection[str] = frozenset(),
) -> Episode | None:
    """Build one Episode from a referral's resources; None without its ServiceRequest.

    ``held`` names Observations still waiting for their items: counted, never scored.
    """
    by_type: dict[str, list[JsonDict]] = {}
    for resource in resources:
        by_type.setdefault(str(resource.get("resourceType")), []).append(resource)
    request = next(
        (r for r in by_type.get("ServiceRequest", []) if r.get("id") == referral_id), None
    )
    received = read_when(request.get("authoredOn")) if request else None
    if request is None or received is None:
        log.warning("referral without a readable ServiceRequest", extra={"referral": referral_id})
        return None
    found = _Found()
    found.dated(request, received)
    notes = _note_hits(by_type.get("DocumentReference", []), phrases, found)
    ended, end_code = _episode_end(by_type.get("EpisodeOfCare", []), found)
    return Episode(
        referral_id=referral_id,
        trust_referral_id=trust_referral_id,
        received=received.local_day,
        presenting_problem=_presenting_problem(request),
        sessions=_sessions(by_type.get("Encounter", []), notes, found),
        scores=_scores(by_type.get("Observation", []), found, held),
        ended=ended,
        end_code=end_code,
        unreadable=tuple(found.unreadable),
        imprecise=tuple(found.imprecise),
        awaiting_items=found.awaiting_items,
    )


def _presenting_problem(request: JsonDict) -> str | None:
    """The ICD-10 code in ServiceRequest.reasonCode, in the data set's form (F41.0 -> F410).

    FHIR writes ICD-10 with the dot (its code system's form), the data set without; stores
    hold both, and the ADSM and protocol prefixes are in the data set's form.
    """
    for concept in request.get("reasonCode") or []:
        for coding in concept.get("coding") or []:
            if _is_icd10(coding.get("system")) and isinstance(coding.get("code"), str):
                code = problem_code(coding["code"])
                if code:
                    return code
    return None


def _is_icd10(system: object) -> bool:
    """The FHIR ICD-10 system, or a national variant of it (``.../icd-10-uk``)."""
    if not isinstance(system, str):
        return False
    return system == codes.ICD10 or system.startswith(codes.ICD10 + "-")


def _coding_code(codings: Iterable[JsonDict], system: str) -> str | None:
    """The code of the first coding in ``system``."""
    return next(
        (str(c["code"]) for c in codings if c.get("system") == system and "code" in c), None
    )


def _sessions(
    encounters: Iterable[JsonDict], notes: dict[str, list[dict[str, int]]], found: _Found
) -> tuple[Session, ...]:
    """Encounters as Sessions, in time order, each with its notes' phrase counts."""
    sessions = []
    for encounter in encounters:
        period = encounter.get("period")
        when = read_when(period.get("start") if isinstance(period, dict) else None)
        if when is None:
            found.skip(encounter, "period.start")
            continue
        found.dated(encounter, when)
        notes_of = notes.get(str(encounter.get("id")), [])
        sessions.append(_session(encounter, when, notes_of))
    return tuple(sorted(sessions, key=lambda s: s.start))


def _session(encounter: JsonDict, when: When, notes: list[dict[str, int]]) -> Session:
    """One Encounter as a Session."""
    extensions = _dicts(encounter.get("extension"))
    attendance = next(
        (
            _text((e.get("valueCoding") or {}).get("code"))
            for e in extensions
            if e.get("url") == codes.ATTENDANCE_EXTENSION
        ),
        None,
    )
    type_codings = [c for t in _dicts(encounter.get("type")) for c in _dicts(t.get("coding"))]
    therapist = next(
        (
            _text(p["individual"]["display"])
            for p in _dicts(encounter.get("participant"))
            if isinstance(p.get("individual"), dict) and p["individual"].get("display")
        ),
        None,
    )
    return Session(
        id=str(encounter.get("id")),
        start=when.at,
        appointment_type=_coding_code(type_codings, codes.DATASET_APPOINTMENT_TYPE),
        attendance=attendance,
        therapist=therapist,
        notes=tuple(notes),
        precision=when.precision,
    )


def _dicts(value: object) -> list[JsonDict]:
    """The dict members of a JSON array (anything else reads as empty)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _scores(
    observations: Iterable[JsonDict], found: _Found, held: Collection[str]
) -> tuple[Score, ...]:
    """Checked total-score Observations of any known measure, with their completion time."""
    scores = []
    for observation in observations:
        if observation.get("status") in _UNUSABLE_STATUSES:
            continue
        if observation.get("id") in held:
            found.awaiting_items += 1
            continue
        score = _score(observation, found)
        if score is not None:
            scores.append(score)
    return tuple(sorted(scores, key=lambda s: s.at))


def _score(observation: JsonDict, found: _Found) -> Score | None:
    """One Observation as a Score, or None (recorded in ``found``) when it cannot be used."""
    codings = _dicts((observation.get("code") or {}).get("coding"))
    measure = next(
        (
            m
            for c in codings
            if (m := measure_for_code(str(c.get("system")), str(c.get("code")))) is not None
        ),
        None,
    )
    if measure is None:
        found.skip(observation, "code")
        return None
    value = _number((observation.get("valueQuantity") or {}).get("value"))
    if value is None:
        found.skip(observation, "valueQuantity.value")
        return None
    when = _effective(observation)
    if when is None:
        found.skip(observation, "effective[x]")
        return None
    found.dated(observation, when)
    return Score(measure=measure.key, value=value, at=when.at, precision=when.precision)


def _number(value: object) -> float | None:
    """A finite JSON number (an int stays an int); booleans and text are not scores."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _effective(observation: JsonDict) -> When | None:
    """When the questionnaire was completed: effectiveDateTime/Instant, else the period start."""
    for name in _EFFECTIVE:
        if name in observation:
            return read_when(observation[name])
    period = observation.get("effectivePeriod")
    if isinstance(period, dict):
        return read_when(period.get("start") or period.get("end"))
    return None


def _note_hits(
    documents: Iterable[JsonDict], phrases: Sequence[str], found: _Found
) -> dict[str, list[dict[str, int]]]:
    """Phrase counts per encounter id, one mapping per note; the text is dropped here."""
    hits: dict[str, list[dict[str, int]]] = {}
    for document in documents:
        if document.get("status") == "entered-in-error":
            continue
        encounters = _dicts((document.get("context") or {}).get("encounter")) or [{}]
        reference = str(encounters[0].get("reference", ""))
        encounter_id = reference.rsplit("/", 1)[-1]
        try:
            counts = count_phrases(note_text(document), phrases)
        except RecordValidationError:
            found.skip(document, "content")
            continue
        hits.setdefault(encounter_id, []).append(counts)
    return hits


def _episode_end(episodes: Iterable[JsonDict], found: _Found) -> tuple[date | None, str | None]:
    """The latest EpisodeOfCare end date (Europe/London day) and its EndCode."""
    latest: tuple[date | None, str | None] = (None, None)
    for episode in episodes:
        if episode.get("status") != "finished":
            continue
        period = episode.get("period")
        when = read_when(period.get("end") if isinstance(period, dict) else None)
        if when is None:
            found.skip(episode, "period.end")
            continue
        found.dated(episode, when)
        end = when.local_day
        if latest[0] is not None and end <= latest[0]:
            continue
        end_code = next(
            (
                _text((e.get("valueCoding") or {}).get("code"))
                for e in _dicts(episode.get("extension"))
                if e.get("url") == codes.END_CODE_EXTENSION
            ),
            None,
        )
        latest = (end, end_code)
    return latest
