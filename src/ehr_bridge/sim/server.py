"""How the IAPTUS-style simulator answers over HTTP (its ``Dialect`` on ``sim.http_base``).

Errors have the API's shape ``{"error", "message", "field"}``; the error tree the state
raises is translated here: unknown referral or item 404, a reused client reference 409
with the existing id, a body breaking a rule 422 naming the field.
"""

from __future__ import annotations

from ehr_bridge.errors import ConflictError, RecordValidationError
from ehr_bridge.sim.http_base import Dialect, Response
from ehr_bridge.sim.state import UnknownItemError, UnknownReferralError

#: largest request body the API accepts (413 above it)
MAX_BODY = 1024 * 1024


def error(status: int, code: str, message: str, field: str | None = None) -> Response:
    """An answer in the API's error shape."""
    return Response(status, {"error": code, "message": message, "field": field})


def refusal(exc: Exception) -> Response | None:
    """The answer to an error a handler raised (None: not one of the API's own)."""
    if isinstance(exc, UnknownReferralError | UnknownItemError):
        return error(404, "not_found", exc.safe_message)
    if isinstance(exc, ConflictError):
        answer = error(409, "conflict", exc.safe_message, "client_reference")
        return Response(409, {**answer.body, "existing_id": exc.existing_id})
    if isinstance(exc, RecordValidationError):
        return error(422, "validation", exc.reason, exc.field)
    return None


DIALECT = Dialect(
    name="trust-sim",
    error=error,
    refusal=refusal,
    max_body=MAX_BODY,
    challenge='Bearer realm="trust-sim"',
    problems={
        "malformed": ("malformed_json", "body is not valid UTF-8 JSON"),
        "unauthorised": ("unauthorized", "bearer token required"),
        "not_found": ("not_found", "no such path"),
        "method": ("method_not_allowed", "method not allowed on this path"),
        "too_large": ("payload_too_large", f"body larger than {MAX_BODY} bytes"),
        "fault": ("unavailable", "simulated fault, try again later"),
        "internal": ("internal", "internal simulator error"),
    },
)
