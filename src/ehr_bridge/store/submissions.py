"""Collect's transactions: a provider bundle's resources, write-backs and receipt, together."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from ehr_bridge.store.models import SubmissionRow

if TYPE_CHECKING:
    from ehr_bridge.store.store import NewOutboxItem, NewQuarantine

JsonDict = dict[str, Any]


class Submissions:
    """Mixed into ``Store``: remember provider bundles and store what they carry."""

    session: Callable[[], Any]
    _put_resource: Callable[[Session, str, str | None, JsonDict], None]
    _queue: Callable[[Session, str, NewOutboxItem], None]
    _add_quarantine: Callable[[Session, str, NewQuarantine], None]
    _resolve_quarantine: Callable[[Session, str, str], None]

    def submission_stored(self, connection: str, bundle_hash: str) -> bool:
        """True if this exact provider bundle was stored before (its ack may have failed)."""
        with self.session() as s:
            return s.get(SubmissionRow, (connection, bundle_hash)) is not None

    def save_submission(
        self,
        connection: str,
        handle: str,
        bundle_hash: str,
        referral_id: str | None,
        resources: Sequence[JsonDict],
        outbox: Sequence[NewOutboxItem],
        quarantine: NewQuarantine | None = None,
    ) -> None:
        """Store a provider bundle's resources and queue its write-backs, together."""
        with self.session() as s:
            for resource in resources:
                self._put_resource(s, connection, referral_id, resource)
            for item in outbox:
                self._queue(s, connection, item)
            if quarantine is not None:
                self._add_quarantine(s, connection, quarantine)
            else:
                self._resolve_quarantine(s, connection, handle)
            s.merge(
                SubmissionRow(
                    connection=connection,
                    bundle_hash=bundle_hash,
                    handle=handle,
                    referral_id=referral_id,
                )
            )
