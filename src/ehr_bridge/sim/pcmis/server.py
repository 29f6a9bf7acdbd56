"""The PC-MIS-style API over HTTP: its routes and its ``Dialect`` on ``sim.http_base``.

Base path ``/pcmis/api/v2``; the key goes in ``X-API-Key``. Errors answer
``{"errors": [{"code", "field", "message"}]}``; the listing is numbered pages with a total
count and RFC 8288 ``Link`` headers built from the request's ``Host``. Appointments, notes
and questionnaires can be overwritten with ``PUT``; status changes and risk alerts cannot.

Under ``/_sim/`` (the same key; no faults) are what people at the trust do on screen, so a
trial can drift the record from a shell: delete or edit a written item, fix a malformed
referral (``docs/adding-an-ehr.md``).
"""

from __future__ import annotations

from urllib.parse import urlencode

from ehr_bridge.errors import ConflictError, RecordValidationError
from ehr_bridge.sim.http_base import (
    CONTROL,
    EXPORT,
    HEALTH,
    Dialect,
    Request,
    Response,
    Route,
    instant_arg,
    int_arg,
)
from ehr_bridge.sim.pcmis.records import SEGMENTS
from ehr_bridge.sim.pcmis.state import (
    UPDATABLE,
    Page,
    PcmisState,
    UnknownItemError,
    UnknownReferralError,
)

API = "/pcmis/api/v2"
KEY_HEADER = "X-API-Key"
MAX_BODY = 1024 * 1024
DEFAULT_PAGE_SIZE = 25
_KIND_BY_SEGMENT = {segment: kind for kind, segment in SEGMENTS.items()}


def error(status: int, code: str, message: str, field_name: str | None = None) -> Response:
    """An answer in this API's error shape."""
    return Response(status, {"errors": [{"code": code, "field": field_name, "message": message}]})


def refusal(exc: Exception) -> Response | None:
    """The answer to an error a handler raised (None: not one of this API's own)."""
    if isinstance(exc, UnknownReferralError):
        return error(404, "NOT_FOUND", "no referral with this reference")
    if isinstance(exc, UnknownItemError):
        return error(404, "NOT_FOUND", "no such item on this referral")
    if isinstance(exc, ConflictError):
        answer = error(409, "DUPLICATE_EXTERNAL_REF", exc.safe_message, "ExternalRef")
        return Response(409, {**answer.body, "existingId": int(exc.existing_id or 0)})
    if isinstance(exc, RecordValidationError):
        return error(422, "VALIDATION", exc.reason, exc.field)
    return None


def _listing(state: PcmisState, request: Request) -> Response:
    query = request.args
    page = state.list_referrals(
        service=query.get("onwardService"),
        modified_since=instant_arg(
            request, "modifiedSince", "must be an ISO 8601 timestamp with an offset"
        ),
        page_number=int_arg(request, "pageNumber", 1, "must be a whole number"),
        page_size=int_arg(request, "pageSize", DEFAULT_PAGE_SIZE, "must be a whole number"),
    )
    paging = {
        "pageNumber": page.number,
        "pageSize": page.size,
        "totalRecords": page.total_records,
        "totalPages": page.total_pages,
    }
    links = _links(page, request)
    return Response(200, {"data": page.records, "paging": paging}, {"Link": links})


def _links(page: Page, request: Request) -> str:
    """RFC 8288 links to the first, last, next and previous pages of the same query."""
    base = f"http://{request.headers.get('Host', 'localhost')}{API}/referrals"
    wanted = {"first": 1, "last": page.total_pages}
    if page.number < page.total_pages:
        wanted["next"] = page.number + 1
    if page.number > 1:
        wanted["prev"] = page.number - 1
    return ", ".join(
        f'<{base}?{urlencode({**request.args, "pageNumber": str(number)})}>; rel="{rel}"'
        for rel, number in wanted.items()
    )


def _one(state: PcmisState, request: Request) -> Response:
    return Response(200, state.get_referral(request.params["ref"]))


def _list(state: PcmisState, request: Request) -> Response:
    kind = _KIND_BY_SEGMENT[request.params["collection"]]
    reference = request.args.get("externalRef")
    return Response(200, {"data": state.list_items(request.params["ref"], kind, reference)})


def _create(state: PcmisState, request: Request) -> Response:
    kind = _KIND_BY_SEGMENT[request.params["collection"]]
    return Response(201, state.create_item(request.params["ref"], kind, request.body))


def _update(state: PcmisState, request: Request) -> Response:
    kind, item_id = _item(request)
    return Response(200, state.update_item(request.params["ref"], kind, item_id, request.body))


def _edit(state: PcmisState, request: Request) -> Response:
    kind, item_id = _item(request)
    return Response(200, state.edit_item(request.params["ref"], kind, item_id, request.body))


def _delete(state: PcmisState, request: Request) -> Response:
    kind, item_id = _item(request)
    return Response(200, state.delete_item(request.params["ref"], kind, item_id))


def _fix(state: PcmisState, request: Request) -> Response:
    return Response(200, state.fix_hostile(request.params["ref"]))


def _item(request: Request) -> tuple[str, int]:
    return _KIND_BY_SEGMENT[request.params["collection"]], int(request.params["item_id"])


_COLLECTIONS = {"collection": "|".join(SEGMENTS.values()), "item_id": r"\d{1,9}"}
_UPDATABLE = {**_COLLECTIONS, "collection": "|".join(SEGMENTS[k] for k in sorted(UPDATABLE))}
_ON_SCREEN = f"{CONTROL}referrals/{{ref}}"

ROUTES: tuple[Route, ...] = (
    Route(f"{API}/referrals", {"GET": _listing}),
    Route(f"{API}/referrals/{{ref}}", {"GET": _one}),
    Route(
        f"{API}/referrals/{{ref}}/{{collection}}",
        {"GET": _list, "POST": _create},
        where={"collection": "|".join(SEGMENTS.values())},
    ),
    Route(
        f"{API}/referrals/{{ref}}/{{collection}}/{{item_id}}", {"PUT": _update}, where=_UPDATABLE
    ),
    Route(f"{_ON_SCREEN}/{{collection}}/{{item_id}}", {"DELETE": _delete}, where=_COLLECTIONS),
    Route(f"{_ON_SCREEN}/{{collection}}/{{item_id}}/edit", {"POST": _edit}, where=_COLLECTIONS),
    Route(f"{_ON_SCREEN}/fix", {"POST": _fix}),
    EXPORT,
    HEALTH,
)
DIALECT = Dialect(
    name="pcmis-sim",
    error=error,
    refusal=refusal,
    max_body=MAX_BODY,
    empty_body=b"null",
    problems={
        "malformed": ("MALFORMED_JSON", "body is not valid UTF-8 JSON"),
        "unauthorised": ("UNAUTHORISED", f"{KEY_HEADER} header required"),
        "not_found": ("NOT_FOUND", "no such path"),
        "method": ("METHOD_NOT_ALLOWED", "method not allowed on this path"),
        "too_large": ("TOO_LARGE", f"body must be 0..{MAX_BODY} bytes"),
        "fault": ("UNAVAILABLE", "simulated fault"),
        "internal": ("INTERNAL", "internal simulator error"),
    },
)
