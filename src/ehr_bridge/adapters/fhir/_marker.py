"""The provider side's collect marker: how far through the platform's Bundles we are.

The marker is the ``meta.lastUpdated`` of the newest acknowledged submission plus the ids
acknowledged at exactly that instant (several Bundles can share one timestamp). Searching
``_lastUpdated=ge<marker>`` and skipping those ids offers every later submission once, and
a Bundle the platform changes after we took it comes back with a newer timestamp.

It lives in a small JSON file written atomically (temp file, fsync, rename), so a crash
leaves the old marker or the new one, never half of one. Losing an acknowledgement is
harmless: a crash after collect stored a submission but before ``acknowledge`` only means
the submission is offered again, and collect recognises it by content hash and stores
nothing twice. Deleting the file therefore only makes collect re-read everything.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ehr_bridge.errors import ConfigError, TransientError
from ehr_bridge.security.files import private_dir

_VERSION = 1


@dataclass(frozen=True)
class Marker:
    """The newest acknowledged ``lastUpdated`` and the ids acknowledged at that instant."""

    last_updated: datetime | None = None
    ids: frozenset[str] = field(default_factory=frozenset)

    def covers(self, when: datetime, bundle_id: str) -> bool:
        """True when a submission at ``when`` with this id was already acknowledged."""
        if self.last_updated is None:
            return False
        return when < self.last_updated or (when == self.last_updated and bundle_id in self.ids)

    def advanced(self, when: datetime, bundle_id: str) -> Marker:
        """The marker after acknowledging one submission (never moves backwards)."""
        if self.last_updated is None or when > self.last_updated:
            return Marker(when, frozenset({bundle_id}))
        if when == self.last_updated:
            return Marker(when, self.ids | {bundle_id})
        return self

    def search_value(self) -> str | None:
        """The ``_lastUpdated`` search value (closed start), or None before the first ack."""
        if self.last_updated is None:
            return None
        return "ge" + self.last_updated.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_instant(text: object) -> datetime | None:
    """An aware UTC datetime from a FHIR instant, or None when it is not one."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else None


class MarkerFile:
    """The marker on disk; the folder is created at start-up so a bad path fails early."""

    def __init__(self, path: Path, *, key: str = "state_file") -> None:
        self.path = path
        self._key = key
        try:
            private_dir(path.parent)
        except OSError as exc:
            raise ConfigError("cannot create the folder for the state file", key=key) from exc
        if path.exists() and not path.is_file():
            raise ConfigError("is not a file", key=key)

    def __repr__(self) -> str:
        return f"MarkerFile({str(self.path)!r})"

    def load(self) -> Marker:
        """The stored marker; none yet means "from the beginning"."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return Marker()
        except (OSError, ValueError):
            raw = None
        when = parse_instant(raw.get("last_updated")) if isinstance(raw, dict) else None
        ids = raw.get("ids") if isinstance(raw, dict) else None
        if when is None or not isinstance(ids, list):
            raise ConfigError(
                "unreadable collect marker; delete it to re-read every submission "
                "(collect skips what it already stored)",
                key=self._key,
            )
        return Marker(when, frozenset(str(i) for i in ids))

    def advance(self, when: datetime, bundle_id: str) -> None:
        """Record one acknowledgement durably (a no-op when already covered)."""
        current = self.load()
        updated = current.advanced(when, bundle_id)
        if updated != current and updated.last_updated is not None:
            stamp = updated.last_updated.isoformat().replace("+00:00", "Z")
            body = {"version": _VERSION, "last_updated": stamp, "ids": sorted(updated.ids)}
            self._write(json.dumps(body, indent=2).encode("utf-8"))

    def _write(self, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise TransientError("could not write the collect marker") from exc
        _fsync_dir(self.path.parent)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename; a platform that cannot open folders only loses durability."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.fsync(fd)
    os.close(fd)
