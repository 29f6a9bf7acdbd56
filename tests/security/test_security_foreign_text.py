"""Foreign text is data, not message (issue 15, point 1): each adapter against a hostile trust.

The trust here is a real server on 127.0.0.1 (stdlib ``http.server``, or a socket speaking
MLLP) that answers every write, and on request every read, with errors quoting a patient:
name, NHS number (plain and spaced), date of birth in three forms, postcode, phone and
e-mail, in the body text, in JSON error codes and fields, in an OperationOutcome's code,
diagnostics and expression, in headers (``Retry-After`` garbage), and for HL7 in MSA-1,
MSA-3, ERR-1, ERR-2, ERR-3 and ERR-8. Every error the adapters raise must hold none of it,
and still say what support needs: the status, a known code, a field of ours, and a hash
that is equal for equal answers. ``test_security_foreign_text_scan.py`` drives the same
trust through the real flows and scans the database, the CLI and the logs.
"""

from __future__ import annotations

import http.client
import json
import socketserver
import threading
import uuid
from collections.abc import Callable
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from ehr_bridge.adapters.base import WriteItem
from ehr_bridge.adapters.fhir import create_provider, create_trust
from ehr_bridge.adapters.hl7v2.build import Header
from ehr_bridge.adapters.hl7v2.mllp import FrameReader, MllpClient, frame
from ehr_bridge.adapters.hl7v2.writer import Hl7Writer, MllpTransport
from ehr_bridge.adapters.iaptus.client import IaptusClient, IaptusOptions
from ehr_bridge.adapters.rest import create as create_rest
from ehr_bridge.config import Secret
from ehr_bridge.domain.facts import PatientFacts, ReferralFacts
from ehr_bridge.domain.referral import ProviderRef, build_referral_resources, referral_bundle
from ehr_bridge.errors import EhrBridgeError, TerminalError, TransientError
from ehr_bridge.security.foreign_text import (
    MAX_RETRY_AFTER_SECONDS,
    digest,
    known_code,
    known_field,
    reduce_reply,
    retry_after_seconds,
)
from ehr_bridge.security.transport import build_session

ROOT = Path(__file__).resolve().parents[2]
GIVEN, FAMILY = "Wilhelmina", "Quartermaine"
NAME = f"{GIVEN} {FAMILY}"
NHS, NHS_SPACED = "9434765919", "943 476 5919"
DOB, DOB_UK, DOB_HL7 = "1961-03-14", "14/03/1961", "19610314"
POSTCODE, PHONE, EMAIL = "ZE2 9QX", "07700 900461", "w.quartermaine@example.org"
#: every value the hostile trust quotes; none may reach an error, a row, a line or a log
SEEDED = (GIVEN, FAMILY, NHS, NHS_SPACED, DOB, DOB_UK, DOB_HL7, POSTCODE, PHONE, EMAIL)
WHO = f"{NAME} (NHS {NHS_SPACED}, born {DOB_UK}, {POSTCODE}, {PHONE}, {EMAIL})"


def hits(text: str | bytes) -> list[str]:
    """Seeded values in ``text``: as written, in any case, and with separators squashed out."""
    if isinstance(text, bytes):
        found = text.lower()
        return [v for v in SEEDED if v.lower().encode() in found]
    lowered, squashed = text.lower(), _squash(text)
    return [v for v in SEEDED if v.lower() in lowered or _squash(v) in squashed]


def _squash(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


# --- what the hostile trust answers -------------------------------------------------------
def _json(**body: Any) -> tuple[str, bytes]:
    return "application/json", json.dumps(body).encode()


def _outcome(code: str, expression: str) -> dict[str, Any]:
    issue = {"severity": "error", "code": code, "diagnostics": WHO, "expression": [expression]}
    return {"resourceType": "OperationOutcome", "issue": [issue], "text": {"div": WHO}}


BODIES: list[tuple[str, bytes]] = [
    _json(
        error=f"{NAME} {NHS}",
        message=f"{WHO} already discharged",
        field=f"text[{DOB}]",
        errors=[{"code": NHS, "field": f"Client {FAMILY}", "message": WHO}],
        **_outcome(FAMILY.lower(), f"Patient.name.where(family='{FAMILY}')"),
    ),
    _json(
        error="validation",
        message=WHO,
        field=FAMILY,
        errors=[{"code": "VALIDATION", "field": NHS, "message": WHO}],
        **_outcome("invalid", f"Patient.birthDate.where($this = @{DOB})"),
    ),
    ("text/plain", f"HTTP 422 {NAME} {NHS} already discharged (field text[{DOB}])".encode()),
    ("text/html", f"<html><body><h1>Error</h1><p>{WHO}</p></body></html>".encode()),
    _json(error="invalid", field=f"/{FAMILY}/{NHS}", errors=[{"code": "x", "field": "/a/0"}]),
    _json(error=EMAIL, field=f"$.{FAMILY}", **_outcome("value", f"{FAMILY}.{GIVEN}")),
]
WRITE_STATUSES = (422, 400, 409, 503, 500, 404, 429)
READ_STATUSES = (503, 500, 400)
GARBAGE_HEADERS = {
    "Retry-After": f"{DOB_UK} {NAME}",
    "X-Patient": WHO,
    "WWW-Authenticate": f'Bearer error="{NHS}", error_description="{NAME}"',
}


class HostileTrust:
    """An HTTP trust on 127.0.0.1 whose every error quotes the patient (see the module doc).

    ``reads`` is ``"hostile"`` (every GET fails like a write) or ``"proxy"`` (GETs go to
    ``upstream``, a real simulator, so pull and read-before-write work and only writes
    fail). ``refuse`` answers everything 403; ``fixed`` (status, content type, body)
    answers everything alike. ``retry_after`` replaces the garbage header.
    """

    def __init__(self, upstream: str | None = None) -> None:
        self.upstream = upstream
        self.reads = "proxy" if upstream else "hostile"
        self.refuse = False
        self.retry_after: str | None = None
        self.fixed: tuple[int, str, bytes] | None = None
        self.extra_headers: dict[str, str] = {}
        self.answered = 0
        self.served: list[bytes] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> HostileTrust:
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, method: str) -> tuple[int, str, bytes, dict[str, str]]:
        """The next hostile answer: a status, a content type, a body and headers."""
        with self._lock:
            n = self.answered
            self.answered += 1
        statuses = READ_STATUSES if method == "GET" else WRITE_STATUSES
        status = 403 if self.refuse else statuses[n % len(statuses)]
        content_type, body = BODIES[n % len(BODIES)]
        if self.fixed is not None:
            status, content_type, body = self.fixed
        headers = {**GARBAGE_HEADERS, **self.extra_headers}
        if self.retry_after is not None:
            headers["Retry-After"] = self.retry_after
        with self._lock:
            self.served.append(body)
        return status, content_type, body, headers

    def proxy(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        """Forward a GET to the real simulator, with our address in its links."""
        assert self.upstream is not None
        target = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(target.netloc, timeout=10)
        forwarded = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
        connection.request("GET", handler.path, headers=forwarded)
        response = connection.getresponse()
        origin = f"{target.scheme}://{target.netloc}"
        body = response.read().replace(origin.encode(), self.url.encode())
        keep = ("content-type", "link", "retry-after")
        headers = {
            k: v.replace(origin, self.url) for k, v in response.getheaders() if k.lower() in keep
        }
        connection.close()
        return response.status, headers, body


def _handler(trust: HostileTrust) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            proxied = trust.reads == "proxy" and not (trust.refuse or trust.fixed)
            if self.command == "GET" and proxied:
                status, headers, body = trust.proxy(self)
            else:
                status, content_type, body, headers = trust.answer(self.command)
                headers["Content-Type"] = content_type
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    return Handler


# --- and as an HL7 v2 interface engine ----------------------------------------------------
def hostile_ack(control_id: str, n: int) -> str:
    """The ``n``-th refusal: every ACK quotes the patient somewhere."""
    control = uuid.uuid4().hex[:12]
    msh = f"MSH|^~\\&|{FAMILY}|{NHS}|EHR-BRIDGE|IESO01|{DOB_HL7}||ACK^R01^ACK|{control}|P|2.5"
    variants = [
        f"MSA|AE|{control_id}|{NAME} NHS {NHS} DOB {DOB_HL7} already discharged\r"
        f"ERR||PID^1^5^{FAMILY}|{NHS}^{NAME}^HL70357|E||||{WHO}",
        f"MSA|AR|{control_id}|{WHO}\rERR||PID^1^5|207^Application internal error^HL70357|E",
        f"MSA|{FAMILY.upper()}|{control_id}|{WHO}",
        f"MSA|AE|{control_id}|{WHO}\rERR|PID^1^3^{NHS}&{FAMILY}",
        f"MSA|AE|{control_id}|{POSTCODE}\rERR||ZPI^1^{NHS}|{EMAIL}^x^99LOCAL|E",
    ]
    return f"{msh}\r{variants[n % len(variants)]}\r"


class HostileHl7Peer:
    """An MLLP receiver on 127.0.0.1 that refuses every message with ``hostile_ack``."""

    def __init__(self) -> None:
        self.answered = 0
        self.served: list[str] = []
        self._lock = threading.Lock()
        peer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                reader = FrameReader(self.request)
                message = reader.next()
                if message is None:
                    return
                header = message.decode("utf-8", "replace").split("\r", 1)[0].split("|")
                with peer._lock:
                    n = peer.answered
                    peer.answered += 1
                    ack = hostile_ack(header[9], n)
                    peer.served.append(ack)
                self.request.sendall(frame(ack.encode()))

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])

    def __enter__(self) -> HostileHl7Peer:
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the reduction itself -----------------------------------------------------------------
PAYLOAD = {
    "text": "a note",
    "client_reference": "ref-1",
    "items": [1, 2, 3],
    "care_contact": {"id": "CC1", "attendance": "5"},
}


OBSERVATION = {"resourceType": "Observation", "valueQuantity": {"value": 9}}
ENCOUNTER = {"resourceType": "Encounter", "class": {"code": "VR"}}
TRANSACTION = {"resourceType": "Bundle", "entry": [{"resource": ENCOUNTER}]}


def test_a_reply_keeps_the_status_a_known_code_a_field_of_ours_and_a_hash() -> None:
    text = json.dumps({"error": "validation", "field": "items[2]", "message": WHO})
    reply = reduce_reply("HTTP 422", text, code="validation", field="items[2]", sent=PAYLOAD)
    assert (reply.status, reply.code, reply.field) == ("HTTP 422", "validation", "items[2]")
    assert str(reply) == f"HTTP 422 validation (field items[2]) reply #{reply.digest}"
    assert reply.digest is not None and len(reply.digest) == 8
    assert reduce_reply("HTTP 422", text).digest == reply.digest  # equal answers, equal hash
    assert reduce_reply("HTTP 422", text + " ").digest != reply.digest


@pytest.mark.parametrize(
    ("code", "field"),
    [
        (f"{NAME} {NHS}", f"text[{DOB}]"),
        (NHS, FAMILY),
        (EMAIL, f"/{FAMILY}/{NHS}"),
        (FAMILY.lower(), f"$.{FAMILY}"),
        (f"validation {NHS}", f"care_contact.{NHS}"),
        (["validation"], {"text": 1}),
        (None, f"text.where(value='{NAME}')"),
    ],
)
def test_codes_off_the_list_and_fields_not_ours_are_hashed_with_the_rest(
    code: object, field: object
) -> None:
    reply = reduce_reply("HTTP 422", f"{code} {field} {WHO}", code=code, field=field, sent=PAYLOAD)
    assert reply.code is None and reply.field is None and reply.digest
    assert not hits(str(reply))


@pytest.mark.parametrize(
    ("path", "sent", "kept"),
    [
        ("text", PAYLOAD, "text"),
        ("$.care_contact.attendance", PAYLOAD, "care_contact.attendance"),
        ("/care_contact/attendance", PAYLOAD, "care_contact.attendance"),
        ("items[1]", PAYLOAD, "items[1]"),
        ("items[3]", PAYLOAD, None),
        ("items.1", PAYLOAD, None),
        ("text.length", PAYLOAD, None),
        ("Observation.value", OBSERVATION, "Observation.value"),
        ("Observation.status", OBSERVATION, None),
        ("Encounter.class.code", TRANSACTION, "Encounter.class.code"),
        ("Bundle.entry[0].resource.class", TRANSACTION, "Bundle.entry[0].resource.class"),
        ("PID-5", frozenset({"PID", "PID-5"}), "PID-5"),
        ("PID-50", frozenset({"PID", "PID-5"}), None),
        ("text", None, None),
    ],
)  # fmt: skip
def test_a_field_is_kept_only_when_what_we_sent_has_it(
    path: str, sent: object, kept: str | None
) -> None:
    assert known_field(path, sent) == kept


def test_codes_are_matched_without_regard_to_case_and_dashes() -> None:
    assert known_code("VALIDATION", {"validation"}) == "VALIDATION"
    assert known_code("not-found", {"not_found"}) == "not-found"
    assert known_code("not found", {"not_found"}) is None
    assert known_code(NHS, {"validation"}) is None
    assert digest("") is None and digest(None) is None


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        (NHS, MAX_RETRY_AFTER_SECONDS),  # no row parked for centuries, no number kept
        ("nan", None),
        ("inf", None),
        ("1e3", None),
        ("-1", None),
        (f"{DOB_UK} {NAME}", None),
        (None, None),
    ],
)
def test_retry_after_is_bounded_seconds_or_nothing(
    header: str | None, seconds: float | None
) -> None:
    assert retry_after_seconds(header) == seconds


# --- every adapter against the hostile trust ----------------------------------------------
Call = Callable[[], object]


def _errors(calls: list[Call], rounds: int) -> list[EhrBridgeError]:
    """Run each call ``rounds`` times and collect the errors (every one must fail)."""
    found = []
    for _ in range(rounds):
        for call in calls:
            with pytest.raises(EhrBridgeError) as caught:
                call()
            found.append(caught.value)
    return found


def _assert_safe(errors: list[EhrBridgeError], served: list[Any]) -> None:
    assert served and all(hits(s) for s in served)  # the trust did quote the patient
    for error in errors:
        said = f"{error} | {error.safe_message} | {error.code} | {error!r}"
        assert not hits(said), said
        retry_after = getattr(error, "retry_after", None)
        assert retry_after is None or retry_after <= MAX_RETRY_AFTER_SECONDS
    assert any("reply #" in str(e) for e in errors)


def test_the_iaptus_adapter_repeats_nothing_the_trust_says() -> None:
    with HostileTrust() as trust:
        options = IaptusOptions(base_url=f"{trust.url}/api/v1", read_attempts=1)
        client = IaptusClient(options, Secret("token"), "IESO01")
        note = WriteItem("clinical_note", "SR0000001", "ref-1", dict(PAYLOAD))
        calls: list[Call] = [
            lambda: client.write(note),
            lambda: client.find(note),
            lambda: client.fetch_referrals(updated_since=None, page=None),
            lambda: client.update(note, "CN1"),
            lambda: client.list_items("SR0000001", "clinical_note"),
        ]
        errors = _errors(calls, rounds=len(BODIES))
        trust.retry_after = NHS
        errors += _errors(calls[:1], rounds=len(WRITE_STATUSES))
        trust.fixed = (422, *BODIES[1])
        (known,) = _errors(calls[:1], rounds=1)
    _assert_safe([*errors, known], trust.served)
    assert {e.code for e in errors} >= {"http_422", "http_400", "conflict", "transient"}
    expected = (
        f"POST /referrals/{{id}}/clinical-notes: HTTP 422 validation reply #{digest(BODIES[1][1])}"
    )
    assert known.safe_message == expected


def test_the_rest_adapter_repeats_nothing_the_trust_says(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("key")
    with HostileTrust() as trust:
        options = {
            "base_url": trust.url,
            "mapping": str(ROOT / "mappings" / "pcmis.yaml"),
            "token_file": "key",
            "read_attempts": 1,
        }
        client = create_rest(options, base_dir=tmp_path, key="trust", provider_code="IESO01")
        item = WriteItem("care_contact", "PCM-1", "ref-1", {"ExternalRef": "ref-1", "Client": "C"})
        calls: list[Call] = [
            lambda: client.write(item),
            lambda: client.find(item),
            lambda: client.fetch_referrals(updated_since=None, page=None),
        ]
        errors = _errors(calls, rounds=len(BODIES))
    _assert_safe(errors, trust.served)


def test_the_fhir_trust_and_provider_repeat_nothing_the_server_says(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("token")
    with HostileTrust() as trust:
        settings = {"base_url": trust.url, "token_file": "token", "read_attempts": 1}
        fhir = create_trust(
            {**settings, "fill_subject": False}, base_dir=tmp_path, key="t", provider_code="X"
        )
        encounter = {"resourceType": "Encounter", "status": "finished", "class": {"code": "VR"}}
        item = WriteItem("care_contact", "SR1", "ref-1", encounter)
        provider = create_provider(
            {**settings, "state_file": "marker.json"}, base_dir=tmp_path, key="p", provider_code="X"
        )
        calls: list[Call] = [
            lambda: fhir.write(item),
            lambda: fhir.find(item),
            lambda: fhir.fetch_referrals(updated_since=None, page=None),
            lambda: list(provider.pending_submissions()),
        ]
        errors = _errors(calls, rounds=len(BODIES))
    _assert_safe(errors, trust.served)
    assert any("(issue invalid) reply #" in str(e) for e in errors)


def _message_answer(code: str) -> bytes:
    header = {"resourceType": "MessageHeader", "response": {"identifier": "x", "code": code}}
    entry = [{"resource": header}, {"resource": _outcome(code, "MessageHeader.response")}]
    return json.dumps({"resourceType": "Bundle", "type": "message", "entry": entry}).encode()


def test_a_process_message_answer_is_reduced_to_its_response_code(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("token")
    facts = ReferralFacts(
        trust_referral_id="SR0000001",
        received_date=date(2026, 11, 2),
        source_of_referral="B1",
        referred_on_to="IESO01",
        status="active",
        patient=PatientFacts(local_id="P1", nhs_number="9990001235"),
    )
    resources = build_referral_resources(
        "conn", ProviderRef("IESO01", "Provider"), facts, allow_test_range=True
    )
    errors = []
    with HostileTrust() as trust:
        settings = {"base_url": trust.url, "token_file": "token", "delivery": "message"}
        provider = create_provider(
            {**settings, "state_file": "m.json"}, base_dir=tmp_path, key="p", provider_code="X"
        )
        for code in ("fatal-error", f"{NAME} {NHS}", "transient-error"):
            trust.fixed = (200, "application/fhir+json", _message_answer(code))
            with pytest.raises((TerminalError, TransientError)) as caught:
                provider.deliver_referral(
                    resources.service_request["id"], referral_bundle(resources)
                )
            errors.append(caught.value)
    assert [str(e).split(" reply #")[0] for e in errors] == [
        "$process-message: the receiver answered fatal-error",
        "$process-message: the receiver answered an unknown code",
        "$process-message: the receiver answered transient-error",
    ]
    _assert_safe(errors, trust.served)


def _hl7_item(reference: str) -> WriteItem:
    payload = {
        "tool_code": "720433000",
        "score": 9,
        "completed_at": "2026-11-10T19:35Z",
        "client_reference": reference,
        "referral_id": "SR1",
    }
    return WriteItem("assessment", "SR1", reference, payload)


def test_the_hl7_writer_repeats_nothing_the_peer_acknowledges() -> None:
    with HostileHl7Peer() as peer:
        writer = Hl7Writer(Header(), MllpTransport(MllpClient("127.0.0.1", peer.port, timeout=5)))
        errors = _errors([lambda: writer.write(_hl7_item(f"ref-{uuid.uuid4().hex[:8]}"))], 10)
    _assert_safe(errors, peer.served)
    said = [str(e).split(" reply #")[0] for e in errors[:5]]
    assert said == [
        "peer answered AE (HL7 error unknown at PID-5)",
        "peer answered AR (HL7 error 207 at PID-5)",
        "peer answered an unknown code (HL7 error none)",
        "peer answered AE (HL7 error unknown at PID-3)",
        "peer answered AE (HL7 error unknown)",
    ]
    assert [e.code for e in errors[:5]] == [
        "hl7_ae",
        "transient",
        "hl7_unknown",
        "hl7_ae",
        "hl7_ae",
    ]


class _BadStatusLine(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        self.wfile.write(f"HTTP/1.1 {NHS} {NAME}\r\nX: {DOB}\r\n\r\n".encode())


def test_a_library_exception_is_named_by_its_type_only() -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _BadStatusLine)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/api/v1"
        client = IaptusClient(IaptusOptions(base_url=url, read_attempts=1), Secret("t"), "X")
        with pytest.raises(TransientError) as caught:
            client.fetch_referrals(updated_since=None, page=None)
    finally:
        server.shutdown()
        server.server_close()
    assert hits(str(caught.value.__context__))  # what requests said quotes the status line
    said = str(caught.value)  # the type, then the host and key from our own config
    assert said == (
        f"GET /referrals: ConnectionError: the connection to 127.0.0.1:{server.server_address[1]}"
        " failed; check the network and the address in trust.base_url"
    )
    assert not hits(said)


# --- known gaps outside the adapters: these fail until security/ reduces them too ---------
def test_a_refused_content_encoding_is_not_repeated() -> None:
    with HostileTrust() as trust:
        trust.fixed = (200, "application/json", b"{}")
        trust.extra_headers = {"Content-Encoding": NHS}
        client = IaptusClient(
            IaptusOptions(base_url=f"{trust.url}/api/v1", read_attempts=1), Secret("t"), "X"
        )
        with pytest.raises(EhrBridgeError) as caught:
            client.fetch_referrals(updated_since=None, page=None)
    assert not hits(str(caught.value))


def test_an_oauth2_token_error_is_not_repeated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOREIGN_TEXT_SECRET", "s3cret")
    with HostileTrust() as trust:
        trust.fixed = (400, "application/json", json.dumps({"error": NHS}).encode())
        table = {"token_url": f"{trust.url}/token", "client_id": "ehr-bridge"}
        raw = {
            "base_url": f"{trust.url}/api/v1",
            "read_attempts": 1,
            "oauth2": {**table, "client_secret_env": "FOREIGN_TEXT_SECRET"},
        }
        options = IaptusOptions.model_validate(raw)
        session = build_session(
            options, raw, base_url=options.base_url, base_dir=tmp_path, key="trust"
        )
        client = IaptusClient(options, None, "X", session)
        with pytest.raises(EhrBridgeError) as caught:
            client.fetch_referrals(updated_since=None, page=None)
    assert not hits(str(caught.value))
