"""Scores held until their item answers are collected: the rows, and the reads collect needs.

A total score is written back only once its items have been checked (docs/fhir-profile.md).
When the provider sends the items (QuestionnaireResponse) in a later bundle than the total
(Observation), the total is stored but held: a ``held_score`` row says which response it
waits for, and no outbox row exists for it. The bundle that brings the response closes
the hold in its own transaction, with the score's write-back or its quarantine entry, so
a crash leaves the hold or its outcome, never neither and never both.

The writes here run inside ``Submissions.save_submissions``' transaction; the reads are
set-based (one query per chunk of ids), as a batch of a hundred bundles asks for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, delete, func, update
from sqlmodel import Session, col, select

from ehr_bridge.store.bulk import RESOURCE_TABLE, chunks, upsert
from ehr_bridge.store.models import HeldScoreRow, QuarantineRow, ResourceRow, utcnow

JsonDict = dict[str, Any]

_HELD: Table = HeldScoreRow.__table__  # type: ignore[attr-defined]
_QUARANTINE: Table = QuarantineRow.__table__  # type: ignore[attr-defined]

#: quarantine ``source`` of a held score whose items, once collected, did not agree
SCORE_SOURCE = "score"
#: a score held longer than this is listed as overdue by ``status`` (docs/reliability.md)
HOLD_OVERDUE_AFTER = timedelta(days=7)


@dataclass(frozen=True)
class HeldScore:
    """A stored total score waiting for the response its ``derivedFrom`` names."""

    observation_id: str
    response_id: str
    referral_id: str
    depends_on: str | None = None
    held_at: datetime | None = None


@dataclass(frozen=True)
class StoredResource:
    """A stored resource with the referral it belongs to."""

    referral_id: str | None
    body: JsonDict


@dataclass(frozen=True)
class HeldSummary:
    """What `status` shows of one connection's held scores."""

    count: int
    oldest: datetime | None
    overdue: list[HeldScore]


class HeldScores:
    """Mixed into ``Store``: the reads behind holding scores until their items arrive."""

    session: Callable[[], Any]
    _open_resource: Callable[[ResourceRow], JsonDict | None]

    def stored_resources(
        self, connection: str, resource_type: str, ids: Sequence[str]
    ) -> dict[str, StoredResource]:
        """This connection's stored resources of a type by id (purged ones are absent)."""
        found: dict[str, StoredResource] = {}
        with self.session() as s:
            for chunk in chunks(ids):
                query = select(ResourceRow).where(
                    ResourceRow.resource_type == resource_type,
                    ResourceRow.connection == connection,
                    col(ResourceRow.id).in_(chunk),
                )
                for row in s.exec(query):
                    body = self._open_resource(row)
                    if body is not None:
                        found[row.id] = StoredResource(row.referral_id, body)
        return found

    def holds_for_responses(self, connection: str, response_ids: Sequence[str]) -> list[HeldScore]:
        """The scores held for any of these responses, oldest first."""
        holds: list[HeldScore] = []
        with self.session() as s:
            for chunk in chunks(response_ids):
                query = select(HeldScoreRow).where(
                    HeldScoreRow.connection == connection,
                    col(HeldScoreRow.response_id).in_(chunk),
                )
                holds.extend(_held(row) for row in s.exec(query))
        return sorted(holds, key=lambda h: (h.held_at or utcnow(), h.observation_id))

    def held_scores(self, connection: str) -> list[HeldScore]:
        """Every score of a connection waiting for its items, oldest first."""
        with self.session() as s:
            query = (
                select(HeldScoreRow)
                .where(HeldScoreRow.connection == connection)
                .order_by(col(HeldScoreRow.held_at), col(HeldScoreRow.observation_id))
            )
            return [_held(row) for row in s.exec(query)]

    def held_summary(
        self, connection: str, *, overdue_after: timedelta = HOLD_OVERDUE_AFTER
    ) -> HeldSummary:
        """How many scores wait for items, since when, and those waiting too long."""
        cutoff = utcnow() - overdue_after
        with self.session() as s:
            count, oldest = s.exec(
                select(func.count(), func.min(HeldScoreRow.held_at)).where(
                    HeldScoreRow.connection == connection
                )
            ).one()
            overdue = s.exec(
                select(HeldScoreRow)
                .where(HeldScoreRow.connection == connection, HeldScoreRow.held_at < cutoff)
                .order_by(col(HeldScoreRow.held_at), col(HeldScoreRow.observation_id))
            )
            return HeldSummary(int(count), oldest, [_held(row) for row in overdue])


def _held(row: HeldScoreRow) -> HeldScore:
    return HeldScore(
        row.observation_id, row.response_id, row.referral_id, row.depends_on, row.held_at
    )


def save_holds(
    s: Session, connection: str, final: Mapping[str, HeldScore | None], now: datetime
) -> None:
    """Apply a batch's last word on each score: held (kept or added) or not held any more.

    A score held again keeps the time it was first held, so `status` shows how long it
    has really waited.
    """
    closed = [obs for obs, hold in final.items() if hold is None]
    for chunk in chunks(closed):
        s.execute(
            delete(_HELD).where(_HELD.c.connection == connection, _HELD.c.observation_id.in_(chunk))
        )
    rows = [_hold_row(connection, hold, now) for hold in final.values() if hold is not None]
    upsert(
        s,
        _HELD,
        rows,
        keys=("connection", "observation_id"),
        update=("response_id", "referral_id", "depends_on"),
    )


def _hold_row(connection: str, hold: HeldScore, now: datetime) -> dict[str, Any]:
    return {
        "connection": connection,
        "observation_id": hold.observation_id,
        "response_id": hold.response_id,
        "referral_id": hold.referral_id,
        "depends_on": hold.depends_on,
        "held_at": hold.held_at or now,
    }


def resolve_score_entries(
    s: Session, connection: str, observation_ids: Iterable[str], now: datetime
) -> None:
    """Close the open quarantine entries of scores that have now passed their check."""
    for chunk in chunks(list(observation_ids)):
        s.execute(
            update(_QUARANTINE)
            .where(
                _QUARANTINE.c.connection == connection,
                _QUARANTINE.c.source == SCORE_SOURCE,
                _QUARANTINE.c.state == "open",
                _QUARANTINE.c.record_ref.in_(chunk),
            )
            .values(state="resolved", closed_at=now)
        )


def remove_observations(s: Session, connection: str, observation_ids: Iterable[str]) -> None:
    """Drop refused scores from the stored resources (their copy is in the quarantine entry).

    A score whose items disagree is then never counted by a report, as if its bundle had
    been quarantined whole; `quarantine retry` stores it again once it passes.
    """
    for chunk in chunks(list(observation_ids)):
        s.execute(
            delete(RESOURCE_TABLE).where(
                RESOURCE_TABLE.c.resource_type == "Observation",
                RESOURCE_TABLE.c.connection == connection,
                RESOURCE_TABLE.c.id.in_(chunk),
            )
        )
