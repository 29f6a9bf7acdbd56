"""Scores and their item answers across bundles: checked once both are here, held till then.

A total score feeds national outcome reporting, so it is written back only after its
items (the QuestionnaireResponse its ``derivedFrom`` names) have been checked against it
(docs/fhir-profile.md). A provider may send the two in different bundles, in either
order, in one collect batch or far apart:

- the response is stored already (or came earlier in this batch): the score is checked
  at once; a failure refuses the whole bundle, as a failure inside one bundle does;
- the response is not here yet: the score is stored and *held* (a ``held_score`` row, no
  outbox row), and the rest of its bundle is written back as usual;
- a later bundle brings the response: each score held for it is checked, then queued
  (same outbox key as ever) or quarantined on its own (source ``score``), in that
  bundle's transaction; the hold ends either way;
- no ``derivedFrom`` at all: the total is written only where the measure's catalogue row
  and the connection (``[connection.scores] itemless_totals``) both allow it.

A batch is checked in offer order against what the bundles before it left, so the
outcome equals collecting the bundles one after another (``BatchScores`` carries that
state between them; the store applies each score's last outcome).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ehr_bridge.domain.codes import OUTCOME_MEASURE_SYSTEM
from ehr_bridge.domain.ids import artefact_key
from ehr_bridge.domain.measures import MEASURES
from ehr_bridge.domain.validate import (
    SessionArtefacts,
    check_score_against_response,
    questionnaire_items,
)
from ehr_bridge.errors import RecordValidationError
from ehr_bridge.store import NewOutboxItem, NewQuarantine, Store
from ehr_bridge.store.held_scores import SCORE_SOURCE, HeldScore, StoredResource
from ehr_bridge.sync.bundle_checks import Refusal
from ehr_bridge.sync.connection import Connection

JsonDict = dict[str, Any]
Items = list[int | None]


@dataclass
class ScorePlan:
    """What one bundle does to scores beyond its own contents (all ids, no values)."""

    #: observation id -> item answers of the response checked against it (from the store)
    items: dict[str, Items] = field(default_factory=dict)
    #: this bundle's scores whose response is not collected yet
    holds: list[HeldScore] = field(default_factory=list)
    #: write-backs of scores held before, released by this bundle's responses
    released: list[NewOutboxItem] = field(default_factory=list)
    #: quarantine entries of held scores whose items, now here, disagree
    refused: list[NewQuarantine] = field(default_factory=list)
    #: observations whose holds end with this bundle (released, refused or sent again)
    unheld: list[str] = field(default_factory=list)
    #: observations checked against items and found to agree
    checked: list[str] = field(default_factory=list)

    @property
    def held_ids(self) -> set[str]:
        """The bundle's own observations that must not be queued yet."""
        return {hold.observation_id for hold in self.holds}


class BatchScores:
    """Responses and held scores as the bundles of a batch, taken in order, leave them."""

    def __init__(
        self,
        conn: Connection,
        responses: dict[str, StoredResource],
        holds: Sequence[HeldScore],
        observations: dict[str, StoredResource],
    ) -> None:
        self.conn = conn
        self.responses = responses
        self.holds = {hold.observation_id: hold for hold in holds}
        self.observations = observations

    @classmethod
    def load(cls, conn: Connection, store: Store, batch: Sequence[SessionArtefacts]) -> BatchScores:
        """What the store knows that this batch's scores and responses can meet.

        Three set-based reads: the stored responses the batch's scores wait for, the
        scores held for the responses the batch carries, and those scores' bodies.
        """
        named = [r for a in batch for r in a.awaiting_items.values() if r is not None]
        carried = [r["id"] for a in batch for r in a.questionnaire_responses]
        responses = store.stored_resources(conn.name, "QuestionnaireResponse", named)
        holds = store.holds_for_responses(conn.name, carried) if carried else []
        observations = store.stored_resources(
            conn.name, "Observation", [h.observation_id for h in holds]
        )
        return cls(conn, responses, holds, observations)

    def plan(self, artefacts: SessionArtefacts, bundle: JsonDict) -> ScorePlan | Refusal:
        """The bundle's effect on scores, or why the bundle must be refused whole."""
        plan = ScorePlan()
        paths = _entry_paths(bundle)
        observations = {obs["id"]: obs for obs in artefacts.observations}
        contacts = {enc["id"] for enc in artefacts.encounters}
        for obs_id, response_id in artefacts.awaiting_items.items():
            observation = observations[obs_id]
            path = paths.get(("Observation", obs_id), "entry")
            refusal = self._plan_score(artefacts, observation, response_id, path, contacts, plan)
            if refusal is not None:
                return refusal
        in_bundle = set(observations)
        plan.checked.extend(
            obs_id
            for obs_id, obs in observations.items()
            if obs_id not in artefacts.awaiting_items and obs.get("derivedFrom")
        )
        for response in artefacts.questionnaire_responses:
            here = StoredResource(artefacts.service_request_id, response)
            for hold in self._holds_for(response["id"]):
                if hold.observation_id not in in_bundle:  # sent again: judged with its bundle
                    self._release(hold, here, plan)
        plan.unheld.extend(in_bundle)
        return plan

    def _plan_score(
        self,
        artefacts: SessionArtefacts,
        observation: JsonDict,
        response_id: str | None,
        path: str,
        contacts: set[str],
        plan: ScorePlan,
    ) -> Refusal | None:
        """Check one score now, hold it, or refuse its bundle."""
        obs_id = observation["id"]
        if response_id is None:
            if self._itemless_allowed(observation):
                return None
            return Refusal("items_missing", "total has no item answers", f"{path}.derivedFrom")
        response = self.responses.get(response_id)
        if response is None:
            depends_on = contact_key(self.conn.name, observation, contacts)
            referral = artefacts.service_request_id
            plan.holds.append(HeldScore(obs_id, response_id, referral, depends_on))
            return None
        error = self._check(observation, response, path, f"QuestionnaireResponse/{response_id}")
        if error is not None:
            return Refusal(error.code, error.reason, error.field)
        plan.items[obs_id] = questionnaire_items(response.body)
        plan.checked.append(obs_id)
        return None

    def _release(self, hold: HeldScore, response: StoredResource, plan: ScorePlan) -> None:
        """A held score meets its response: queue it, or quarantine it on its own."""
        plan.unheld.append(hold.observation_id)
        stored = self.observations.get(hold.observation_id)
        if stored is None:  # purged by retention, or refused meanwhile: nothing to write
            return
        error = self._check(stored.body, response, _PAIR[0], _PAIR[1])
        if error is not None:
            plan.refused.append(_score_entry(stored.body, response.body, error))
            return
        items = questionnaire_items(response.body)
        plan.released.append(
            assessment_item(self.conn.name, hold.referral_id, stored.body, hold.depends_on, items)
        )
        plan.checked.append(hold.observation_id)

    def _check(
        self, observation: JsonDict, response: StoredResource, obs_path: str, response_path: str
    ) -> RecordValidationError | None:
        """Why the score and these items disagree, if they do (None: they agree).

        The rules include that both belong to the same patient and referral, so a
        response id reused across referrals never lends its items to another's score.
        """
        try:
            check_score_against_response(
                observation,
                response.body,
                adsm_enabled=self.conn.adsm_enabled,
                observation_path=obs_path,
                response_path=response_path,
            )
        except RecordValidationError as exc:
            return exc
        return None

    def _itemless_allowed(self, observation: JsonDict) -> bool:
        """Both the catalogue row and the connection accept this measure's bare totals."""
        key = measure_key(observation)
        measure = MEASURES.get(key or "")
        return (
            measure is not None and measure.itemless_total_ok and key in self.conn.itemless_totals
        )

    def _holds_for(self, response_id: str) -> list[HeldScore]:
        return [hold for hold in self.holds.values() if hold.response_id == response_id]

    def commit(self, artefacts: SessionArtefacts, plan: ScorePlan) -> None:
        """The bundle is stored: what it brought is there for the bundles after it."""
        referral = artefacts.service_request_id
        for response in artefacts.questionnaire_responses:
            self.responses[response["id"]] = StoredResource(referral, response)
        for observation in artefacts.observations:
            self.observations[observation["id"]] = StoredResource(referral, observation)
        for refused in plan.refused:
            self.observations.pop(refused.record_ref, None)
        for obs_id in plan.unheld:
            self.holds.pop(obs_id, None)
        self.holds.update((hold.observation_id, hold) for hold in plan.holds)


def assessment_item(
    connection: str,
    referral_id: str,
    observation: JsonDict,
    depends_on: str | None,
    items: Items | None,
) -> NewOutboxItem:
    """The write-back of a checked score, with its item answers when it has them."""
    return NewOutboxItem(
        artefact_key(connection, "assessment", observation["id"]),
        referral_id,
        "assessment",
        "Observation",
        observation["id"],
        depends_on=depends_on,
        context={"items": items} if items is not None else {},
    )


def contact_key(connection: str, observation: JsonDict, contacts: set[str]) -> str | None:
    """The care contact a score waits for: its encounter's, when that came in its bundle."""
    encounter = ref_id(observation.get("encounter", {}))
    if encounter is None or encounter not in contacts:
        return None
    return artefact_key(connection, "care_contact", encounter)


def measure_key(observation: JsonDict) -> str | None:
    """Our catalogue key, from the normalised ``code`` (its outcome-measure coding)."""
    for coding in (observation.get("code") or {}).get("coding") or []:
        if coding.get("system") == OUTCOME_MEASURE_SYSTEM and isinstance(coding.get("code"), str):
            code: str = coding["code"]
            return code
    return None


def ref_id(reference: Any) -> str | None:
    """The id from ``Kind/id`` or ``urn:uuid:id``."""
    text = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(text, str):
        return None
    return text.rsplit("/", 1)[-1].rsplit(":", 1)[-1]


def _entry_paths(bundle: JsonDict) -> Mapping[tuple[str, str], str]:
    """(type, id) -> the entry's path, to name a field the way bundle checks do."""
    paths: dict[tuple[str, str], str] = {}
    for index, entry in enumerate(bundle.get("entry") or []):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict):
            key = (str(resource.get("resourceType")), str(resource.get("id")))
            paths.setdefault(key, f"entry[{index}].resource")
    return paths


#: where a held score's quarantine payload (a bundle of the pair) has the score and items
_PAIR = ("entry[0].resource", "entry[1].resource")


def _score_entry(
    observation: JsonDict, response: JsonDict, error: RecordValidationError
) -> NewQuarantine:
    """A held score's quarantine entry; its payload is the pair, so `quarantine retry` works.

    The payload is a session bundle of the score (entry 0) and its items (entry 1): retried,
    it is checked as one bundle, and stored and queued if it now passes.
    """
    payload = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": f"urn:uuid:{observation['id']}", "resource": observation},
            {"fullUrl": f"urn:uuid:{response['id']}", "resource": response},
        ],
    }
    return NewQuarantine(
        source=SCORE_SOURCE,
        record_ref=observation["id"],
        code=error.code,
        reason=error.safe_message,
        field=error.field,
        payload=payload,
    )
