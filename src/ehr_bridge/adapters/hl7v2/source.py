"""TrustSource over the drop folder: received HL7 files, in arrival order, as mapping records.

Each record is one message decoded by ``record.decode`` plus two keys of ours:
``updated_at`` (the arrival stamp, ISO 8601 UTC: the cursor) and ``file`` (where the
message is kept under ``received/``, ``#n`` for the n-th message of a batch file).

A file that cannot be read faithfully still becomes one record, with no segments::

    {"updated_at", "file", "unreadable": "line 4: not a segment...", "unreadable_field": "line 4"}

``unreadable`` is a value-free reason and ``unreadable_field`` where (``MSH-18``, ``MSH-2``,
``PID``, ``PID-5``, ``line 4``, or ``(file)`` for a file not read at all); the pull
quarantines it naming that field, so nothing is skipped, cut or guessed at. Besides what
``er7`` refuses, a message with more than one PID is refused here (when PID is decoded): a
REF^I12 is about one patient, and taking either PID could file one patient's referral
against another.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ehr_bridge.adapters.base import SourcePage
from ehr_bridge.adapters.folder._files import UnreadableFileError
from ehr_bridge.adapters.hl7v2.er7 import Er7Error, decode_bytes, in_batch, split_messages
from ehr_bridge.adapters.hl7v2.inbox import Inbox, after, stamp_instant
from ehr_bridge.adapters.hl7v2.record import decode

JsonDict = dict[str, Any]


class DropFolderSource:
    """Pages through received messages stamped at or after the cursor."""

    def __init__(
        self,
        inbox: Inbox,
        *,
        zone: ZoneInfo,
        page_size: int = 200,
        segments: Collection[str] | None = None,
    ) -> None:
        self.inbox = inbox
        self.zone = zone
        self.page_size = page_size
        self.segments = frozenset(segments) if segments is not None else None
        self._listing: tuple[datetime | None, list[str]] | None = None

    def fetch_referrals(self, *, updated_since: datetime | None, page: str | None) -> SourcePage:
        """Receive new drops (first page only), then one page of messages in arrival order."""
        names = self._names(updated_since, fresh=page is None)
        start = after(names, page)
        chunk = names[start : start + self.page_size]
        records = [record for name in chunk for record in self.records(name)]
        more = start + self.page_size < len(names)
        return SourcePage(records=records, next_page=chunk[-1] if more else None)

    def _names(self, since: datetime | None, *, fresh: bool) -> list[str]:
        if fresh:
            self.inbox.receive()
        if fresh or self._listing is None or self._listing[0] != since:
            self._listing = (since, self.inbox.listing(since))
        return self._listing[1]

    def records(self, name: str) -> list[JsonDict]:
        """Every message in one received file as a record (one per message)."""
        meta = {"updated_at": _iso_z(stamp_instant(name.split("/", 1)[1])), "file": name}
        try:
            messages = split_messages(decode_bytes(self.inbox.read(name)))
            decoded = [self._decode(m, n) for n, m in enumerate(messages, 1)]
        except Er7Error as exc:  # quarantined with this reason, naming the place
            return [{**meta, "unreadable": str(exc), "unreadable_field": exc.where}]
        except UnreadableFileError as exc:  # too large, a symlink: never read
            return [{**meta, "unreadable": str(exc), "unreadable_field": "(file)"}]
        return [
            {**meta, "file": f"{name}#{n}" if n else name, **message}
            for n, message in enumerate(decoded)
        ]

    def _decode(self, segments: list[str], number: int) -> JsonDict:
        """One message as its record; refuses a second patient (``number``: in the batch)."""
        message = decode(segments, self.zone, self.segments)
        if len(message.get("PID", ())) > 1:
            reason = "more than one PID segment (one patient per message)" + in_batch(number)
            raise Er7Error("PID", reason)
        return message


def _iso_z(moment: datetime) -> str:
    if moment.year < 1000:  # strftime's %Y does not pad these; never a real arrival
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return (  # what that strftime writes, without its cost on every record
        f"{moment.year}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}Z"
    )
