"""The IAPTUS-style simulator's routes: path templates, methods and the state call behind each.

Kept apart from the HTTP base (``sim.http_base``) so the OpenAPI test can compare the
document with ``ROUTES`` and so handlers stay plain functions of (state, request). Handlers
raise the error tree; ``sim.server`` turns errors into status codes.
"""

from __future__ import annotations

from functools import partial

from ehr_bridge.errors import RecordValidationError
from ehr_bridge.sim.faults import FaultRates
from ehr_bridge.sim.http_base import EXPORT, HEALTH, Request, Response, Route, instant_arg, int_arg
from ehr_bridge.sim.records import (
    ASSESSMENT,
    CARE_CONTACT,
    CLINICAL_NOTE,
    RISK_ALERT,
    STATUS_EVENT,
)
from ehr_bridge.sim.state import TrustState

API = "/api/v1"


def list_referrals(state: TrustState, request: Request) -> Response:
    """GET /referrals: one page of referrals by (updated_at, id)."""
    items, token = state.list_referrals(
        referred_on_to=request.args.get("referred_on_to"),
        updated_since=instant_arg(
            request, "updated_since", "must be an ISO 8601 timestamp with a zone"
        ),
        page_size=int_arg(request, "page_size", 100, "must be an integer"),
        page_token=request.args.get("page_token") or None,
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
    reference = request.args.get("client_reference")
    return Response(200, {"items": state.list_items(request.params["id"], kind, reference)})


def update_item(kind: str, state: TrustState, request: Request) -> Response:
    """PUT a whole new body over one item (same client reference); 200 with the item."""
    params = request.params
    return Response(200, state.update_item(params["id"], kind, params["item_id"], request.body))


def get_risk_alert(state: TrustState, request: Request) -> Response:
    """GET one risk alert, with its status at the trust (open, acknowledged, closed)."""
    params = request.params
    return Response(200, state.get_item(params["id"], RISK_ALERT, params["item_id"]))


def acknowledge_risk_alert(state: TrustState, request: Request) -> Response:
    """POST the duty team's acknowledgement of a risk alert; 200 with the alert."""
    params = request.params
    return Response(
        200, state.acknowledge_risk_alert(params["id"], params["item_id"], request.body)
    )


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
    _artefact_route("risk-alerts", RISK_ALERT),
    _item_route("care-contacts", CARE_CONTACT),
    _item_route("clinical-notes", CLINICAL_NOTE),
    _item_route("assessments", ASSESSMENT),
    Route(f"{API}/referrals/{{id}}/risk-alerts/{{item_id}}", {"GET": get_risk_alert}),
    Route(
        f"{API}/referrals/{{id}}/risk-alerts/{{item_id}}/acknowledge",
        {"POST": acknowledge_risk_alert},
    ),
    EXPORT,
    Route("/_sim/faults", {"GET": get_faults, "PUT": put_faults}),
    HEALTH,
)
