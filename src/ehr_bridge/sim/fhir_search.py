"""FHIR search for the simulator: the parameters the adapters use, strictly parsed.

Supported on every type: ``_id``, ``identifier`` (token ``system|value``, ``|value``,
``value`` or ``system|``; also matches ``masterIdentifier``), ``_lastUpdated`` with the
prefixes ``eq ge gt le lt`` (repeatable), ``_tag`` (token), ``_count`` (1..1000),
``_sort=_lastUpdated`` and the simulator's own ``_page`` token. Per type: ServiceRequest
``performer`` (reference), ``performer:identifier`` (token), ``status``, ``subject`` and
``_include=ServiceRequest:subject``; Task ``focus`` and ``status``; Encounter, Observation
and DocumentReference ``subject``; Bundle ``type``. Comma-separated values are OR-ed.

Anything else is refused with 400, as strict servers do, so an adapter that sends a
parameter the server would silently ignore fails in tests rather than in production.
Results are ordered by (``meta.lastUpdated``, id) and paged by keyset (``sim.paging``), so
a resource changed while a client pages moves to the end and is served again, never lost.
"""

from __future__ import annotations

import copy
import hashlib
import json
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from urllib.parse import urlencode

from ehr_bridge.errors import RecordValidationError
from ehr_bridge.sim import paging
from ehr_bridge.sim.fhir_store import FhirSimError, FhirStore, JsonDict, last_updated, order_key
from ehr_bridge.sim.records import parse_timestamp

Matcher = Callable[[JsonDict], bool]
Params = dict[str, list[str]]

_COMMON = frozenset(
    {"_id", "identifier", "_lastUpdated", "_tag", "_count", "_sort", "_page", "_include"}
)
_BY_TYPE: dict[str, frozenset[str]] = {
    "ServiceRequest": frozenset({"performer", "performer:identifier", "status", "subject"}),
    "Task": frozenset({"focus", "status"}),
    "Encounter": frozenset({"subject"}),
    "Observation": frozenset({"subject"}),
    "DocumentReference": frozenset({"subject"}),
    "Bundle": frozenset({"type"}),
}
_INCLUDES = {
    "ServiceRequest": frozenset({"ServiceRequest:subject", "ServiceRequest:subject:Patient"})
}
_PREFIXES: dict[str, Callable[[datetime, datetime], bool]] = {
    "eq": operator.eq,
    "ge": operator.ge,
    "gt": operator.gt,
    "le": operator.le,
    "lt": operator.lt,
}
DEFAULT_COUNT = 50
MAX_COUNT = 1000


@dataclass
class Query:
    """A parsed search: matchers on the resource, paging, and what to include."""

    kind: str
    params: Params
    matchers: list[Matcher] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    include_subject: bool = False
    after: paging.Position | None = None

    @property
    def fingerprint(self) -> str:
        """Binds a page token to the query it was issued for."""
        stable = {k: v for k, v in sorted(self.params.items()) if k != "_page"}
        raw = json.dumps([self.kind, stable], sort_keys=True).encode()
        return hashlib.sha256(raw).hexdigest()[:16]


def _bad(name: str, message: str) -> FhirSimError:
    return FhirSimError(400, "invalid", message, name)


def _token_match(spec: str, system: object, value: object) -> bool:
    """FHIR token semantics: ``system|value``, ``|value``, ``system|`` or plain ``value``."""
    if "|" not in spec:
        return value == spec
    want_system, _, want_value = spec.partition("|")
    system_ok = (system in (None, "")) if want_system == "" else system == want_system
    return system_ok and (want_value == "" or value == want_value)


def _identifiers(resource: JsonDict) -> list[JsonDict]:
    found = resource.get("identifier")
    items = found if isinstance(found, list) else [found] if isinstance(found, dict) else []
    master = resource.get("masterIdentifier")
    return [i for i in [*items, master] if isinstance(i, dict)]


def _any_token(values: list[str], candidates: Callable[[JsonDict], list[JsonDict]]) -> Matcher:
    specs = [s for v in values for s in v.split(",")]
    return lambda r: any(
        _token_match(s, c.get("system"), c.get("value", c.get("code")))
        for s in specs
        for c in candidates(r)
    )


def _reference_match(values: list[str], element: str) -> Matcher:
    wanted = [s for v in values for s in v.split(",")]

    def match(resource: JsonDict) -> bool:
        found = resource.get(element)
        refs = found if isinstance(found, list) else [found]
        texts = [r.get("reference") for r in refs if isinstance(r, dict)]
        return any(
            isinstance(t, str) and (t == w or t.endswith("/" + w)) for t in texts for w in wanted
        )

    return match


def _equals(values: list[str], element: str) -> Matcher:
    wanted = {s for v in values for s in v.split(",")}
    return lambda r: r.get(element) in wanted


def _instant(name: str, text: str) -> datetime:
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        return parse_timestamp(text)
    except ValueError:
        raise _bad(name, "must be a date or an instant with a time zone") from None


def _last_updated(values: list[str]) -> Matcher:
    bounds: list[tuple[Callable[[datetime, datetime], bool], datetime]] = []
    for raw in values:
        prefix, text = (raw[:2], raw[2:]) if raw[:2] in _PREFIXES else ("eq", raw)
        bounds.append((_PREFIXES[prefix], _instant("_lastUpdated", text)))
    return lambda r: all(compare(last_updated(r), bound) for compare, bound in bounds)


def _performers(resource: JsonDict) -> list[JsonDict]:
    found = resource.get("performer")
    return [p["identifier"] for p in found or [] if isinstance(p, dict) and "identifier" in p]


def _tags(resource: JsonDict) -> list[JsonDict]:
    return [t for t in resource.get("meta", {}).get("tag", []) if isinstance(t, dict)]


_MATCHERS: dict[str, Callable[[list[str]], Matcher]] = {
    "_id": lambda v: _equals(v, "id"),
    "identifier": lambda v: _any_token(v, _identifiers),
    "_lastUpdated": _last_updated,
    "_tag": lambda v: _any_token(v, _tags),
    "performer": lambda v: _reference_match(v, "performer"),
    "performer:identifier": lambda v: _any_token(v, _performers),
    "status": lambda v: _equals(v, "status"),
    "subject": lambda v: _reference_match(v, "subject"),
    "focus": lambda v: _reference_match(v, "focus"),
    "type": lambda v: _equals(v, "type"),
}


def parse_query(kind: str, params: Params) -> Query:
    """Check every parameter and build the query, or raise a 400 naming the parameter."""
    allowed = _COMMON | _BY_TYPE.get(kind, frozenset())
    query = Query(kind, params)
    for name, values in params.items():
        if name not in allowed:
            raise _bad(name, f"unknown search parameter for {kind}")
        if name in _MATCHERS:
            query.matchers.append(_MATCHERS[name](values))
    query.count = _count(params.get("_count"))
    _check_sort(params.get("_sort"))
    query.include_subject = _include(kind, params.get("_include"))
    if params.get("_page"):
        try:
            query.after = paging.decode(params["_page"][0], query.fingerprint)
        except RecordValidationError as exc:
            raise _bad("_page", exc.reason) from None
    return query


def _count(values: list[str] | None) -> int:
    if not values:
        return DEFAULT_COUNT
    if not values[0].isdigit() or not 1 <= int(values[0]) <= MAX_COUNT:
        raise _bad("_count", f"must be a whole number 1..{MAX_COUNT}")
    return int(values[0])


def _check_sort(values: list[str] | None) -> None:
    if values and values != ["_lastUpdated"]:
        raise _bad("_sort", "only _sort=_lastUpdated is supported")


def _include(kind: str, values: list[str] | None) -> bool:
    for value in values or []:
        if value not in _INCLUDES.get(kind, frozenset()):
            raise _bad("_include", "unsupported _include")
    return bool(values)


def search(store: FhirStore, query: Query, base_url: str) -> JsonDict:
    """One page of matches as a ``searchset`` Bundle with ``self`` and ``next`` links."""
    with store.locked():
        found = [r for r in store.candidates(query.kind) if all(m(r) for m in query.matchers)]
        rest = [r for r in found if _after(r, query.after)]
        page, more = rest[: query.count], len(rest) > query.count
        entries = [_entry(base_url, copy.deepcopy(r), "match") for r in page]
        if query.include_subject:
            entries += [_entry(base_url, p, "include") for p in _subjects(store, page)]
    links = [{"relation": "self", "url": _url(base_url, query, None)}]
    if more:
        token = paging.encode(paging.Position(*order_key(page[-1])), query.fingerprint)
        links.append({"relation": "next", "url": _url(base_url, query, token)})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(found),
        "link": links,
        "entry": entries,
    }


def _after(resource: JsonDict, position: paging.Position | None) -> bool:
    return position is None or order_key(resource) > (position.updated, position.key)


def _subjects(store: FhirStore, page: list[JsonDict]) -> list[JsonDict]:
    """The distinct Patients the page's resources point at with ``subject``, in page order."""
    seen: dict[str, JsonDict] = {}
    for resource in page:
        reference = resource.get("subject", {}).get("reference", "")
        kind, _, patient_id = reference.rpartition("/")
        if kind.rpartition("/")[2] == "Patient" and patient_id not in seen:
            patient = store.read("Patient", patient_id)
            if patient is not None:
                seen[patient_id] = patient
    return list(seen.values())


def _entry(base_url: str, resource: JsonDict, mode: str) -> JsonDict:
    return {
        "fullUrl": f"{base_url}/{resource['resourceType']}/{resource['id']}",
        "resource": resource,
        "search": {"mode": mode},
    }


def _url(base_url: str, query: Query, token: str | None) -> str:
    pairs = [(k, v) for k, values in query.params.items() if k != "_page" for v in values]
    if token is not None:
        pairs.append(("_page", token))
    return f"{base_url}/{query.kind}?{urlencode(pairs)}"
