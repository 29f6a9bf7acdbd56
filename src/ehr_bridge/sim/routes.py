"""The simulator's route table: path templates, methods and the state call behind each.

Kept apart from the HTTP plumbing so the OpenAPI test can compare the document with
``ROUTES`` and so handlers stay plain functions of (state, request). Handlers raise the
error tree; ``server`` turns errors into status codes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from urllib.parse import unquote

from ehr_bridge.errors import RecordValidationError
from ehr_bridge.sim.faults import FaultRates
from ehr_bridge.sim.records import (
    ASSESSMENT,
    CARE_CONTACT,
    CLINICAL_NOTE,
    STATUS_EVENT,
    JsonDict,
    parse_timestamp,
)
from ehr_bridge.sim.state import TrustState

API = "/api/v1"


@dataclass(frozen=True)
class Request:
    """What a handler needs from an HTTP request: path parameters, query and parsed body."""

    method: str
    params: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    body: object = None


@dataclass(frozen=True)
class Response:
    """A JSON answer."""

    status: int
    body: JsonDict
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[TrustState, Request], Response]


@dataclass(frozen=True)
class Route:
    """One path template with its handlers by method; ``auth`` False only for health."""

    template: str
    methods: dict[str, Handler]
    auth: bool = True

    @property
    def pattern(self) -> re.Pattern[str]:
        """The template as a regex with one named group per ``{param}``."""
        return re.compile(re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(self.template)))


def _query_int(query: dict[str, str], name: str, default: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"\d{1,6}", text):
        raise RecordValidationError("must be an integer", field=name)
    return int(text)


def _query_timestamp(query: dict[str, str], name: str) -> datetime | None:
    text = query.get(name)
    if text is None:
        return None
    try:
        return parse_timestamp(text)
    except ValueError:
        raise RecordValidationError(
            "must be an ISO 8601 timestamp with a zone", field=name
        ) from None


def list_referrals(state: TrustState, request: Request) -> Response:
    """GET /referrals: one page of referrals by (updated_at, id)."""
    query = request.query
    items, token = state.list_referrals(
        referred_on_to=query.get("referred_on_to"),
        updated_since=_query_timestamp(query, "updated_since"),
        page_size=_query_int(query, "page_size", 100),
        page_token=query.get("page_token") or None,
    )
    return Response(200, {"items": items, "next_page_token": token})


def get_referral(state: TrustState, request: Request) -> Response:
    """GET /referrals/{id}."""
    return Response(200, state.get_referral(request.params["id"]))


def create_item(kind: str, state: TrustState, request: Request) -> Response:
    """POST a write of ``kind`` to a referral."""
    return Response(201, state.create_item(request.params["id"], kind, request.body))


def list_items(kind: str, state: TrustState, request: Request) -> Response:
    """GET a referral's items of ``kind``, optionally found by client reference."""
    reference = request.query.get("client_reference")
    return Response(200, {"items": state.list_items(request.params["id"], kind, reference)})


def update_item(kind: str, state: TrustState, request: Request) -> Response:
    """PUT a whole new body over one item (same client reference); 200 with the item."""
    params = request.params
    return Response(200, state.update_item(params["id"], kind, params["item_id"], request.body))


def export(state: TrustState, request: Request) -> Response:
    """GET /_sim/export: the whole record system."""
    return Response(200, state.export())


def get_faults(state: TrustState, request: Request) -> Response:
    """GET /_sim/faults: the random fault rates, what has fired, and write conflicts."""
    return Response(200, {**state.faults.snapshot(), "conflicts": state.conflicts})


def put_faults(state: TrustState, request: Request) -> Response:
    """PUT /_sim/faults: replace the random fault rates while the simulator runs."""
    try:
        rates = FaultRates.from_json(request.body)
    except (TypeError, ValueError) as exc:
        raise RecordValidationError(str(exc), field="faults") from None
    state.faults.set_rates(rates)
    return get_faults(state, request)


def health(state: TrustState, request: Request) -> Response:
    """GET /_sim/health: liveness, no token needed."""
    return Response(200, {"ok": True})


def _artefact_route(segment: str, kind: str) -> Route:
    return Route(
        f"{API}/referrals/{{id}}/{segment}",
        {"GET": partial(list_items, kind), "POST": partial(create_item, kind)},
    )


def _item_route(segment: str, kind: str) -> Route:
    return Route(
        f"{API}/referrals/{{id}}/{segment}/{{item_id}}", {"PUT": partial(update_item, kind)}
    )


ROUTES: tuple[Route, ...] = (
    Route(f"{API}/referrals", {"GET": list_referrals}),
    Route(f"{API}/referrals/{{id}}", {"GET": get_referral}),
    _artefact_route("status", STATUS_EVENT),
    _artefact_route("care-contacts", CARE_CONTACT),
    _artefact_route("clinical-notes", CLINICAL_NOTE),
    _artefact_route("assessments", ASSESSMENT),
    _item_route("care-contacts", CARE_CONTACT),
    _item_route("clinical-notes", CLINICAL_NOTE),
    _item_route("assessments", ASSESSMENT),
    Route("/_sim/export", {"GET": export}),
    Route("/_sim/faults", {"GET": get_faults, "PUT": put_faults}),
    Route("/_sim/health", {"GET": health}, auth=False),
)
_COMPILED = [(route, route.pattern) for route in ROUTES]


def resolve(path: str) -> tuple[Route, dict[str, str]] | None:
    """The route for a URL path (no query string) and its decoded parameters."""
    for route, pattern in _COMPILED:
        match = pattern.fullmatch(path)
        if match:
            return route, {name: unquote(value) for name, value in match.groupdict().items()}
    return None
