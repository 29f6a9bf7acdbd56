"""Ids the trust returns are shape-checked before they are stored or printed (issue 15).

Each kind of trust that names its items (IAPTUS-style, PC-MIS over ``rest``, FHIR) is the
project's simulator for pull and deliver; then the connection is pointed at a trust on
127.0.0.1 that passes reads through to the simulator and answers every write as a success
(or, for the REST APIs, a 409 "already there") whose id is a patient's name and date of
birth: ``{"id": "Wilhelmina Quartermaine"}``, ``existing_id``, PC-MIS ``NoteId``, a
transaction-response ``location`` of ``Observation/Wilhelmina Quartermaine``. The real
collect and push flows run; every write-back is dead-lettered with ``trust_id_shape`` and
no trust id, and nothing of the answer is in the database file, the error columns, the
command output or the log. (HL7 v2 stores our own control id, never one of the peer's.)
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_security_foreign_text import DOB, FAMILY, NAME, HostileTrust, hits
from test_security_foreign_text_scan import (
    DATABASE,
    _cli,
    _cli_listings,
    _database_hits,
    _hostile,
    _repoint,
)

from ehr_bridge.domain.ids import is_trust_id
from ehr_bridge.sync.cycle import run_cycle
from support.trusts import PHQ9_ITEMS, TrustHarness, TrustKind, score_bundle, trust_harness

PCMIS_IDS = ("AppointmentId", "NoteId", "QuestionnaireId", "StatusChangeId")
#: (kind, how the trust answers a write, the status, the body)
ANSWERS = {
    ("iaptus", "created"): (201, {"id": NAME}),
    ("iaptus", "conflict"): (409, {"error": "duplicate", "existing_id": f"{FAMILY}, {DOB}"}),
    ("pcmis", "created"): (201, dict.fromkeys(PCMIS_IDS, NAME)),
    ("pcmis", "conflict"): (409, {"existingId": f"{NAME} {DOB}"}),
    (
        "fhir",
        "created",
    ): (
        200,
        {
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [{"response": {"status": "201 Created", "location": f"Observation/{NAME}"}}],
        },
    ),
}


@pytest.mark.parametrize(("kind", "answer"), sorted(ANSWERS))
def test_a_trust_answering_a_patients_name_as_the_id_leaves_none_of_it(
    kind: TrustKind, answer: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    status, body = ANSWERS[(kind, answer)]
    workdir = tmp_path / kind
    with (
        caplog.at_level(logging.DEBUG),
        trust_harness(kind, workdir, referrals=2) as harness,
        _naming(kind, harness, status, body) as trust,
    ):
        conn = _repoint(harness, trust)
        for referral in harness.referrals:
            harness.submit(score_bundle(referral, "phq9", PHQ9_ITEMS, note="Went well."))
        _until_settled(harness, conn)
        printed = _cli_listings(workdir, harness.store, conn.name)
        printed |= _cli(workdir, "sync", "--once", "--flow", "push")
        open_hits = _database_hits(workdir)
    assert trust.writes, "the trust was asked to write"
    rows = _outbox(workdir)
    refused = [r for r in rows if r["last_error_code"] == "trust_id_shape"]
    assert refused and all(r["state"] == "dead" for r in rows), rows
    assert all(r["trust_id"] is None for r in rows), rows
    assert all("is not an id" in r["last_error"] for r in refused)
    texts = [str(r["last_error"]) for r in rows] + [*printed.values()]
    texts += [f"{r.getMessage()} {r.__dict__}" for r in caplog.records]
    found = {text[:80]: hits(text) for text in texts if hits(text)}
    assert not found, found
    assert not open_hits and not _database_hits(workdir), _database_hits(workdir)
    assert "is not an id" in printed["outbox list --json"]  # said, and nothing of it shown


def test_the_shape_takes_the_ids_trusts_use_and_no_free_text() -> None:
    ids = ["CN0000001", "12345", "Observation/0425c4dd-1484-5fb3-874f-c427f371a3ae", "a.b_c:d-e"]
    assert all(is_trust_id(value) for value in ids)
    assert is_trust_id("Q" + "x" * 127) and not is_trust_id("Q" + "x" * 128)
    refused = [NAME, f"{FAMILY},{DOB}", "w.q@example.org", "", "-x", "/etc", "a\nb", "<b>", 7]
    assert not any(is_trust_id(value) for value in refused)


# --- the trust ----------------------------------------------------------------------------
class _NamingTrust(HostileTrust):
    """Reads go to the simulator; every write is answered ``status`` with ``body``."""

    def __init__(self, upstream: str, status: int, body: object, content_type: str) -> None:
        super().__init__(upstream)
        self.status, self.content_type = status, content_type
        self.body = json.dumps(body).encode()
        self.writes = 0

    def answer(self, method: str) -> tuple[int, str, bytes, dict[str, str]]:
        with self._lock:
            self.writes += 1
            self.served.append(self.body)
        return self.status, self.content_type, self.body, {}


@contextmanager
def _naming(
    kind: TrustKind, harness: TrustHarness, status: int, body: object
) -> Iterator[_NamingTrust]:
    with _hostile(kind, harness) as hostile:
        assert isinstance(hostile, HostileTrust) and hostile.upstream is not None
        upstream = hostile.upstream
    content_type = "application/fhir+json" if kind == "fhir" else "application/json"
    with _NamingTrust(upstream, status, body, content_type) as trust:
        yield trust


def _until_settled(harness: TrustHarness, conn: object) -> None:
    for _ in range(20):
        run_cycle(conn, harness.store)  # type: ignore[arg-type]
        counts = harness.store.outbox_counts(harness.conn.name)
        if counts.get("dead") and not counts.get("pending") and not counts.get("in_flight"):
            return
        time.sleep(0.05)
    raise AssertionError(f"write-backs did not settle: {counts}")


def _outbox(workdir: Path) -> list[dict[str, object]]:
    with sqlite3.connect(workdir / DATABASE) as db:
        db.row_factory = sqlite3.Row
        query = "SELECT state, trust_id, last_error, last_error_code FROM outbox"
        return [dict(row) for row in db.execute(query)]
