"""A simulated HL7 v2 trust, for tests, the benchmark and trying the adapter by hand.

- ``uk_referral`` writes a UK-style REF^I12 for a referral in the trust simulator's JSON
  shape (``docs/trust-api.md``): NHS number in PID-3 as ``^^^NHS^NH``, the data-set source
  of referral in RF1-10, the provider code in PRD-7 of the ``RT`` provider.
- ``RecordingPeer`` receives our ORU^R01 and MDM^T02 over MLLP. It is hl7apy's own
  ``MLLPServer`` (a third-party MLLP implementation), which closes the connection after
  every ACK, so the writer's reconnect path runs all the time. It files each message by
  MSH-10 and answers a repeat with AE and error 205, as a de-duplicating receiver does.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from hl7apy.mllp import AbstractHandler, MLLPServer

from ehr_bridge.adapters.hl7v2 import ack, er7
from ehr_bridge.adapters.hl7v2.ack import Incoming, Problem
from ehr_bridge.adapters.hl7v2.dates import hl7_timestamp
from ehr_bridge.adapters.hl7v2.mllp import frame

JsonDict = dict[str, Any]
_SEX = {"1": "M", "2": "F", "9": "O", "X": "U"}


def uk_referral(
    referral: JsonDict,
    *,
    control_id: str | None = None,
    trust_code: str = "RXX",
    provider_name: str = "Online therapy provider",
) -> str:
    """A REF^I12 (v2.5, CR segment ends) carrying one simulator referral."""
    e = er7.escape
    patient = referral.get("patient") or {}
    sent = datetime.fromisoformat(str(referral["updated_at"]).replace("Z", "+00:00"))
    msh = er7.header(
        [
            "IAPTUS",
            e(trust_code),
            "EHR-BRIDGE",
            e(str(referral.get("referred_on_to", ""))),
            hl7_timestamp(sent),
            "",
            "REF^I12^REF_I12",
            e(control_id or f"{referral['id']}-{referral.get('version', 1)}"),
            "P",
            "2.5",
            *[""] * 4,  # MSH-13..16
            "GBR",  # MSH-17 country code
            "UNICODE UTF-8",  # MSH-18 character set
        ]
    )
    segments = [
        msh,
        _rf1(referral),
        er7.segment("PRD", ["RP^Referring Provider^HL70286", "GP practice"]),
        er7.segment(
            "PRD",
            [
                "RT^Referred to Provider^HL70286",
                e(provider_name),
                *[""] * 4,
                f"{e(str(referral.get('referred_on_to', '')))}^ODS",
            ],
        ),
        _pid(patient, trust_code),
    ]
    if referral.get("presenting_problem"):
        segments.append(er7.segment("DG1", ["1", "", f"{e(referral['presenting_problem'])}^^I10"]))
    return "\r".join(segments) + "\r"


def _date(value: Any) -> str:
    return str(value).replace("-", "") if value else ""


def _rf1(referral: JsonDict) -> str:
    e = er7.escape
    return er7.segment(
        "RF1",
        [
            "A^Accepted^HL70283",
            "R^Routine^HL70280",
            "Psy^Psychiatric^HL70281",
            "",
            "O^Outpatient^HL70284",
            f"{e(str(referral['id']))}^IAPTUS",
            _date(referral.get("received_date")),
            "",
            _date(referral.get("referred_on_date")),
            f"{e(str(referral.get('source_of_referral') or ''))}^^99SOR",
        ],
    )


def _pid(patient: JsonDict, trust_code: str) -> str:
    e = er7.escape
    ids = [f"{e(str(patient.get('local_id', '')))}^^^{e(trust_code)}^MR"]
    if patient.get("nhs_number"):
        ids.insert(0, f"{e(str(patient['nhs_number']))}^^^NHS^NH")
    telecom = []
    if patient.get("phone"):
        telecom.append(f"{e(patient['phone'])}^PRN^CP")
    if patient.get("email"):
        telecom.append(f"^NET^Internet^{e(patient['email'])}")
    fields = [""] * 32
    fields[0], fields[2] = "1", "~".join(ids)
    fields[4] = f"{e(patient.get('family_name') or '')}^{e(patient.get('given_name') or '')}"
    fields[6], fields[7] = (
        _date(patient.get("birth_date")),
        _SEX.get(str(patient.get("gender")), ""),
    )
    if patient.get("postcode"):
        fields[10] = f"^^^^{e(patient['postcode'])}^GBR^H"
    fields[12] = "~".join(telecom)
    status = patient.get("nhs_number_status")
    fields[31] = f"NSTS{int(status):02d}" if status not in (None, "") else ""
    return er7.segment("PID", fields)


class RecordingPeer:
    """A receiving trust interface engine on hl7apy's MLLP server (closes after each ACK)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, refuse: str | None = None):
        self.received: dict[str, str] = {}  # MSH-10 -> message text
        self.deliveries = 0  # messages that arrived, repeats included
        self.refuse = refuse  # "AE" or "AR": answer every message with this instead
        self._lock = threading.Lock()
        handler = _handler_class(self)
        types = ("ORU^R01^ORU_R01", "MDM^T02^MDM_T02", "ORU^R01", "MDM^T02")
        self.server = MLLPServer(host, port, {t: (handler,) for t in types}, timeout=5)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.server.server_address[1])

    def start(self) -> RecordingPeer:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()

    def answer(self, message: str) -> str:
        """File one message and return the MLLP-framed ACK."""
        segments = er7.split_messages(message)[0]
        fields = segments[0].split("|")
        incoming = Incoming(
            sending_application=fields[2].split("^")[0],
            receiving_application="TRUST-ENGINE",
            trigger=fields[8].split("^")[1] if "^" in fields[8] else "",
            control_id=fields[9],
            version=fields[11],
        )
        with self._lock:
            self.deliveries += 1
            problem = self._problem(incoming.control_id)
            if problem is None:
                self.received[incoming.control_id] = message
        text = ack.build_ack(incoming, problem)
        return frame(text.encode("utf-8")).decode("utf-8")

    def _problem(self, control_id: str) -> Problem | None:
        if self.refuse:
            return Problem(
                ack.APPLICATION_INTERNAL_ERROR, "MSH", None, "refused", self.refuse == "AR"
            )
        if control_id in self.received:
            return Problem(ack.DUPLICATE_KEY, "MSH", 10, "already filed")
        return None

    def messages(self, kind: str) -> list[str]:
        """Filed messages of one type (``ORU^R01`` or ``MDM^T02``)."""
        return [m for m in self.received.values() if f"|{kind}" in m.split("\r", 1)[0]]


def _handler_class(peer: RecordingPeer) -> type[AbstractHandler]:
    class _Handler(AbstractHandler):  # type: ignore[misc]
        def reply(self) -> str:
            return peer.answer(self.incoming_message)

    return _Handler
