"""The FHIR server simulator's records: resources by type and id, versions and a clock.

One re-entrant lock guards everything, so the threaded HTTP server can call in from any
request thread and a transaction can plan, check and commit several writes atomically.
``meta.lastUpdated`` comes from a clock that never goes backwards and moves at least a
millisecond per write, so a client's closed-start ``_lastUpdated=ge`` cursor never misses a
change. An update whose content equals the stored resource is a no-op (no new version, no
new ``lastUpdated``), as on common FHIR servers, so re-sending the same thing is invisible.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ehr_bridge.domain.validate import validate_resource
from ehr_bridge.errors import RecordValidationError
from ehr_bridge.sim.records import Clock, MonotonicClock, format_timestamp, parse_timestamp, utc_now

JsonDict = dict[str, Any]

#: FHIR ``id``: letters, digits, '-' and '.', 1 to 64 characters
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
#: resource type names as they appear in URLs
FHIR_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_SERVER_META = ("versionId", "lastUpdated")


class FhirSimError(Exception):
    """A request the simulated server refuses; the HTTP layer answers an OperationOutcome."""

    def __init__(self, status: int, code: str, message: str, expression: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.expression = expression


@dataclass(frozen=True)
class Written:
    """The outcome of one write: the stored resource and whether it was new or changed."""

    resource: JsonDict
    created: bool
    changed: bool

    @property
    def location(self) -> str:
        """``Type/id/_history/version``, as a FHIR server's Location header."""
        meta = self.resource["meta"]
        return f"{self.resource['resourceType']}/{self.resource['id']}/_history/{meta['versionId']}"


def last_updated(resource: JsonDict) -> datetime:
    """A stored resource's ``meta.lastUpdated`` as an aware UTC datetime."""
    return parse_timestamp(resource["meta"]["lastUpdated"])


def content_of(resource: JsonDict) -> JsonDict:
    """The resource without the server-managed meta (what a no-op update compares)."""
    body = copy.deepcopy(resource)
    meta = {k: v for k, v in body.get("meta", {}).items() if k not in _SERVER_META}
    if meta:
        body["meta"] = meta
    else:
        body.pop("meta", None)
    return body


def checked(resource: object, path: str = "") -> JsonDict:
    """Refuse what a FHIR server would refuse to parse, naming the element, never the value."""
    if not isinstance(resource, dict):
        raise FhirSimError(400, "structure", "resource is not a JSON object", path or None)
    try:
        validate_resource(resource)
    except RecordValidationError as exc:
        where = f"{path}.{exc.field}" if path and exc.field else (exc.field or path or None)
        raise FhirSimError(400, "structure", exc.reason, where) from None
    return resource


class FhirStore:
    """Every resource the simulated server holds, behind one lock."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._lock = threading.RLock()
        self._clock = MonotonicClock(clock or utc_now, datetime(1970, 1, 1, tzinfo=UTC))
        self._resources: dict[tuple[str, str], JsonDict] = {}
        self._next_id = 1
        #: answers to processed messages by MessageHeader id, so a resent message is a no-op
        self.message_answers: dict[str, JsonDict] = {}
        #: every message Bundle accepted, in order (for tests and the demo)
        self.messages: list[JsonDict] = []

    @contextmanager
    def locked(self) -> Iterator[FhirStore]:
        """Hold the lock across several calls (a transaction's plan, check and commit)."""
        with self._lock:
            yield self

    def tick(self) -> datetime:
        """The next write time: now, or one millisecond after the previous write."""
        with self._lock:
            return self._clock.tick()

    def read(self, kind: str, resource_id: str) -> JsonDict | None:
        """A copy of the stored resource, or None."""
        with self._lock:
            found = self._resources.get((kind, resource_id))
            return copy.deepcopy(found) if found is not None else None

    def all_of(self, kind: str) -> list[JsonDict]:
        """Copies of every resource of a type, in (lastUpdated, id) order."""
        with self._lock:
            found = [r for (k, _), r in self._resources.items() if k == kind]
            return copy.deepcopy(sorted(found, key=order_key))

    def new_id(self) -> str:
        """A server-assigned id no resource has yet (numeric, as many servers mint them)."""
        with self._lock:
            while any(key[1] == str(self._next_id) for key in self._resources):
                self._next_id += 1
            self._next_id += 1
            return str(self._next_id - 1)

    def put(self, resource: JsonDict, *, when: datetime | None = None) -> Written:
        """Create or update ``resource`` under its own type and id (update-as-create).

        ``when`` backdates a seeded resource; live writes take the clock's next tick.
        """
        kind, resource_id = resource.get("resourceType"), resource.get("id")
        if not isinstance(kind, str) or not FHIR_TYPE.fullmatch(kind):
            raise FhirSimError(400, "structure", "resourceType is missing or malformed")
        if not isinstance(resource_id, str) or not FHIR_ID.fullmatch(resource_id):
            raise FhirSimError(400, "structure", "id is missing or malformed", f"{kind}.id")
        with self._lock:
            current = self._resources.get((kind, resource_id))
            if current is not None and content_of(current) == content_of(resource):
                return Written(copy.deepcopy(current), created=False, changed=False)
            version = 1 if current is None else int(current["meta"]["versionId"]) + 1
            stamp = when if when is not None else self.tick()
            if when is not None:
                self._clock.passed(when)
            stored = content_of(resource)
            stored["meta"] = {
                **stored.get("meta", {}),
                "versionId": str(version),
                "lastUpdated": format_timestamp(stamp),
            }
            self._resources[(kind, resource_id)] = stored
            return Written(copy.deepcopy(stored), created=current is None, changed=True)

    def create(self, resource: JsonDict) -> Written:
        """Store ``resource`` under a new server-assigned id (a plain POST)."""
        with self._lock:
            return self.put({**resource, "id": self.new_id()})

    def candidates(self, kind: str) -> list[JsonDict]:
        """The stored resources of a type (no copies: callers hold the lock and only read)."""
        with self._lock:
            return sorted((r for (k, _), r in self._resources.items() if k == kind), key=order_key)


def order_key(resource: JsonDict) -> tuple[datetime, str]:
    """Search order: by ``meta.lastUpdated``, then id, so paging is stable."""
    return last_updated(resource), str(resource["id"])
