"""Flow leases: one worker at a time runs a connection's pull, deliver or collect.

Several daemons on one database would otherwise walk the same cursor together and
collide on the same inserts. Taking a lease is a compare-and-set on one row: take it if
free, expired or already ours. A crashed holder's lease simply runs out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from ehr_bridge.store.models import FlowLeaseRow, utcnow


class FlowLeases:
    """Mixed into ``Store``."""

    session: Callable[[], Any]

    def take_flow_lease(self, connection: str, flow: str, owner: str, seconds: float) -> bool:
        """True if ``owner`` now holds the lease on this connection's flow."""
        now = utcnow()
        expires = now + timedelta(seconds=seconds)
        with self.session() as s:
            result = s.exec(
                update(FlowLeaseRow)
                .where(
                    and_(
                        col(FlowLeaseRow.connection) == connection,
                        col(FlowLeaseRow.flow) == flow,
                        or_(col(FlowLeaseRow.owner) == owner, col(FlowLeaseRow.expires_at) < now),
                    )
                )
                .values(owner=owner, expires_at=expires)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:
                return True
        try:
            with self.session() as s:
                if s.get(FlowLeaseRow, (connection, flow)) is not None:
                    return False
                s.add(
                    FlowLeaseRow(connection=connection, flow=flow, owner=owner, expires_at=expires)
                )
            return True
        except IntegrityError:  # another worker created it first
            return False

    def expire_orphaned_flow_leases(self, host: str, is_alive: Callable[[int], bool]) -> int:
        """Free flow leases of dead processes on this host (a restart after SIGKILL)."""
        freed = 0
        with self.session() as s:
            for row in s.exec(select(FlowLeaseRow)).all():
                owner_host, _, pid = row.owner.rpartition(":")
                if owner_host == host and pid.isdigit() and not is_alive(int(pid)):
                    row.expires_at = utcnow() - timedelta(seconds=1)
                    s.add(row)
                    freed += 1
        return freed

    def release_flow_lease(self, connection: str, flow: str, owner: str) -> None:
        """Give the lease up at once (a clean finish), if it is still ours."""
        with self.session() as s:
            s.exec(
                update(FlowLeaseRow)
                .where(
                    and_(
                        col(FlowLeaseRow.connection) == connection,
                        col(FlowLeaseRow.flow) == flow,
                        col(FlowLeaseRow.owner) == owner,
                    )
                )
                .values(expires_at=utcnow() - timedelta(seconds=1))
                .execution_options(synchronize_session=False)
            )
