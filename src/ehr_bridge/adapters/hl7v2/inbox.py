"""The drop folder: where REF^I12 files arrive, and the arrival order the cursor follows.

A trust's interface engine (or our MLLP listener) puts files into ``drop``. Each pull first
*receives* them: under a lock, every settled file gets an arrival stamp and is renamed into
``received/<day>/<stamp>-<name>``. Stamps only ever increase (clock steps back or not), and
a file is visible in ``received`` only once its stamp is taken, so a reader that lists the
folder sees every file older than the newest one it sees. That makes the stamp a safe
closed-start cursor (capability ``updated_since``): nothing that arrives later can sort
before a cursor already committed.

``accept`` is the listener's durable write: temporary file, fsync, atomic rename into
``drop``, fsync of the folder. Only after it returns may the listener answer ``AA``, so a
message that was acknowledged is on disk even if the process dies the next instant.

Received files hold the referrals in plain text; once pulled (stamped before the cursor)
and older than ``retention_days`` they are deleted by ``retention purge``
(``stamped_before`` and ``remove``).
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import itertools
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ehr_bridge.adapters.folder._files import is_plain_name, read_regular_file
from ehr_bridge.security.files import open_private, private_dir, write_private

STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"
STAMP_LENGTH = 22  # 20261126T104412123456Z
#: the largest file read from the folder (a batch may hold many messages)
DEFAULT_MAX_FILE_BYTES = 16 * 1024 * 1024
_PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".filepart")
_counter = itertools.count()
_STAMP = re.compile(r"[0-9]{8}T[0-9]{12}Z")  # ASCII digits only, as ``stamp_text`` writes


def stamp_text(moment: datetime) -> str:
    """A UTC instant as the sortable stamp used in received file names."""
    m = moment.astimezone(UTC)
    if m.year < 1000:  # strftime's %Y does not pad these; never a real arrival
        return m.strftime(STAMP_FORMAT)
    return (  # what strftime(STAMP_FORMAT) writes, at a fraction of its cost per file
        f"{m.year}{m.month:02d}{m.day:02d}T{m.hour:02d}{m.minute:02d}{m.second:02d}"
        f"{m.microsecond:06d}Z"
    )


def stamp_instant(name: str) -> datetime:
    """The arrival instant a received file name starts with.

    Every record of a pull needs this, and ``strptime`` costs more than reading the file,
    so a stamp of the exact shape we write is read by position; anything else (or a
    position read that ``datetime`` refuses) goes to ``strptime``, which decides as before.

    Raises:
        ValueError: the name does not start with a stamp.
    """
    text = name[:STAMP_LENGTH]
    if _STAMP.fullmatch(text):
        try:
            return datetime(
                int(text[0:4]),
                int(text[4:6]),
                int(text[6:8]),
                int(text[9:11]),
                int(text[11:13]),
                int(text[13:15]),
                int(text[15:21]),
                tzinfo=UTC,
            )
        except ValueError:
            pass
    return datetime.strptime(text, STAMP_FORMAT).replace(tzinfo=UTC)


class Inbox:
    """A drop folder and the received folder beside it."""

    def __init__(
        self,
        drop: Path,
        received: Path,
        *,
        settle_seconds: float = 2.0,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> None:
        self.drop = drop
        self.received = received
        self.settle_seconds = settle_seconds
        self.max_file_bytes = max_file_bytes
        self._lock = threading.Lock()

    def ensure(self) -> None:
        """Create both folders (at start-up, so a wrong path fails early)."""
        private_dir(self.drop)
        private_dir(self.received)

    # --- writing (the MLLP listener) -------------------------------------------------------
    def accept(self, data: bytes, prefix: str = "mllp") -> Path:
        """Store one message durably in the drop folder and return its path."""
        now = datetime.now(UTC).strftime(STAMP_FORMAT)
        name = f"{prefix}-{now}-{os.getpid()}-{next(_counter)}.hl7"
        temporary = self.drop / f".{name}.tmp"
        with open_private(temporary, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        final = self.drop / name
        os.replace(temporary, final)
        _fsync_folder(self.drop)
        return final

    # --- receiving ---------------------------------------------------------------------------
    def receive(self) -> int:
        """Stamp and move every settled file from the drop folder; return how many."""
        if not self._waiting():
            return 0
        with self._exclusive():
            waiting = self._settled()  # under the lock: another receiver may have taken some
            stamps = self._reserve(len(waiting)) if waiting else []
            days = {s[:8] for s in stamps}
            for day in days:
                private_dir(self.received / day)
            drop, received = str(self.drop), str(self.received)
            moved = sum(
                _move(f"{drop}/{name}", f"{received}/{s[:8]}/{s}-{name}")
                for name, s in zip(waiting, stamps, strict=True)
            )
            for day in days:
                _fsync_folder(self.received / day)
        return moved

    def _waiting(self) -> bool:
        """Whether any file may be waiting: a cheap look (no stat) before taking the lock."""
        with os.scandir(self.drop) as entries:
            return any(not _partial(e.name) and e.is_file(follow_symlinks=False) for e in entries)

    def _settled(self) -> list[str]:
        """Names of the settled files in the drop folder, oldest modification first."""
        cutoff = datetime.now(UTC).timestamp() - self.settle_seconds
        found = []
        with os.scandir(self.drop) as entries:
            for entry in entries:
                if _partial(entry.name) or not entry.is_file(follow_symlinks=False):
                    continue
                modified = entry.stat(follow_symlinks=False).st_mtime
                if modified <= cutoff:
                    found.append((modified, entry.name))
        return [name for _, name in sorted(found)]

    def _reserve(self, count: int) -> list[str]:
        """``count`` increasing stamps after the last one ever issued, recorded first."""
        marker = self.received / ".last-stamp"
        last = marker.read_text("ascii").strip() if marker.exists() else ""
        start = datetime.now(UTC)
        if last and stamp_instant(last) >= start:
            start = stamp_instant(last) + timedelta(microseconds=1)
        stamps = [stamp_text(start + timedelta(microseconds=i)) for i in range(count)]
        temporary = marker.with_suffix(".tmp")
        write_private(temporary, stamps[-1])
        os.replace(temporary, marker)
        return stamps

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One receiver at a time, across threads and processes (daemon plus `sync --once`)."""
        with self._lock, open_private(self.received / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- reading -----------------------------------------------------------------------------
    def listing(self, since: datetime | None) -> list[str]:
        """Received files (``day/name``) stamped at or after ``since``, oldest first."""
        floor = stamp_text(since) if since is not None else ""
        names: list[str] = []
        for day in sorted(p.name for p in self.received.iterdir() if p.is_dir()):
            if floor and day < floor[:8]:
                continue
            inside = sorted(n for n in os.listdir(self.received / day) if not _partial(n))
            names.extend(f"{day}/{n}" for n in inside if n[:STAMP_LENGTH] >= floor)
        return names

    def read(self, relative: str) -> bytes:
        """The bytes of one received file: a regular file (not a link), within the size limit.

        Raises:
            UnreadableFileError: ``symlink``, ``not_regular_file``, ``too_large``.
        """
        return read_regular_file(self.received / relative, max_bytes=self.max_file_bytes)

    # --- retention ---------------------------------------------------------------------------
    def stamped_before(self, before: datetime) -> Iterator[tuple[str, datetime]]:
        """Received files (``day/name``) stamped before ``before``, with their stamp."""
        floor = stamp_text(before)
        for day in sorted(p.name for p in self.received.iterdir() if p.is_dir()):
            if day > floor[:8]:
                return
            for name in sorted(os.listdir(self.received / day)):
                if _partial(name) or name[:STAMP_LENGTH] >= floor:
                    continue
                try:
                    yield f"{day}/{name}", stamp_instant(name)
                except ValueError:
                    continue  # not a name we gave: not ours to delete

    def remove(self, relative: str) -> bool:
        """Delete one received file, and its day's folder once that day is past and empty."""
        day, _, name = relative.partition("/")
        if not (_STAMP.fullmatch(f"{day}T000000000000Z") and is_plain_name(name)):
            raise ValueError("not a received file")
        try:
            os.unlink(self.received / day / name)
        except FileNotFoundError:
            return False
        if day < stamp_text(datetime.now(UTC))[:8]:  # today's may still receive files
            with contextlib.suppress(OSError):
                os.rmdir(self.received / day)
        return True


def after(names: list[str], token: str | None) -> int:
    """Index of the first name after ``token`` in a sorted listing (0 without a token)."""
    return 0 if token is None else bisect.bisect_right(names, token)


def _move(source: str, target: str) -> bool:
    """Rename ``source`` to ``target``; False if it vanished (taken by someone else)."""
    try:
        os.replace(source, target)
    except FileNotFoundError:
        return False
    return True


def _partial(name: str) -> bool:
    return name.startswith(".") or name.endswith(_PARTIAL_SUFFIXES)


def _fsync_folder(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
