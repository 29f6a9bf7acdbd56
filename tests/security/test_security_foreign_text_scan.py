"""PHI scan over a hostile run (issue 15, point 1): every kind of trust, the real flows.

Each kind of trust (IAPTUS-style, PC-MIS behind the ``rest`` adapter, FHIR, HL7 v2 over
MLLP) is first the project's own simulator, so referrals are pulled and delivered as
usual. Then the connection is pointed at ``HostileTrust`` (reads passed through to the
simulator, every write refused with the patient quoted in body, JSON fields and headers)
or ``HostileHl7Peer`` (every ACK quoting the patient in MSA and ERR), and the real
collect and push flows run until each write-back is dead-lettered; then reads fail too
(pull's run error) and finally everything is answered 403 through ``sync --once`` on the
command line (push's and pull's run errors). So the trust's words had every chance to
reach ``outbox.last_error``, ``write_attempt.error``, ``run.error``, the log and the
screen.

Scanned for every seeded value (name, NHS number plain and spaced, date of birth in three
forms, postcode, phone, e-mail; in any case, and with separators squashed out): the
SQLite database file and its ``-wal`` file byte for byte, while the bridge has them open
and again after it closed them; every error column (the helper of
``test_security_phi_scan.py``); the output of ``status``, ``outbox list`` (all and
``--state dead``), ``referrals list``, ``referrals show`` of each referral and
``quarantine list``, as text and ``--json``, and of each ``sync``; the log file at DEBUG;
and every log record as logged, before the redacting filter. 0 hits.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from test_security_foreign_text import BODIES, SEEDED, HostileHl7Peer, HostileTrust, hits
from test_security_phi_scan import _error_texts, _scan
from typer.testing import CliRunner

from ehr_bridge.cli.app import app
from ehr_bridge.config import load_config
from ehr_bridge.logs import setup_logging
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import Connection, build_connections
from ehr_bridge.sync.cycle import run_cycle
from support.trusts import KINDS, PHQ9_ITEMS, TrustHarness, TrustKind, score_bundle, trust_harness

pytestmark = pytest.mark.slow
LOGGING = '[logging]\nlevel = "DEBUG"\nfile = "logs/ehr-bridge.log"\n'
DATABASE = Path("state") / "ehr-bridge.db"
runner = CliRunner()


@pytest.mark.parametrize("kind", KINDS)
def test_a_hostile_trust_leaves_no_patient_data_in_the_database_cli_or_logs(
    kind: TrustKind, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    workdir = tmp_path / kind
    printed: dict[str, str] = {}
    with (
        caplog.at_level(logging.DEBUG),
        trust_harness(kind, workdir, extra_config=LOGGING, referrals=3) as harness,
        _hostile(kind, harness) as trust,
    ):
        assert not _database_hits(workdir), "the seeded values must be new to the bridge"
        conn = _repoint(harness, trust)
        with _logging_to(workdir):
            _refuse_every_write_back(harness, conn)
            if isinstance(trust, HostileTrust):
                trust.reads = "hostile"
                report = run_cycle(conn, harness.store, flows=("pull",))
                assert "error" in report["pull"], report
        if isinstance(trust, HostileTrust):
            trust.refuse = True
            harness.submit(score_bundle(harness.referrals[0], "phq9", PHQ9_ITEMS, number=2))
            printed |= _cli(workdir, "sync", "--once", "--flow", "collect")
            printed |= _cli(workdir, "sync", "--once", "--flow", "push")
        printed |= _cli(workdir, "sync", "--once")
        printed |= _cli_listings(workdir, harness.store, conn.name)
        served = [*trust.served]
        open_hits = _database_hits(workdir)
        wal_seen = (workdir / f"{DATABASE}-wal").exists()
    closed_hits = _database_hits(workdir)

    variants = 5 if kind == "hl7v2" else len(BODIES)  # each kind of hostile answer, once or more
    assert len(served) >= variants and all(hits(s) for s in served), served
    errors = _error_texts(workdir / DATABASE)
    _assert_every_channel_was_used(workdir, kind, printed)
    log_file = (workdir / "logs" / "ehr-bridge.log").read_text("utf-8")
    records = [_as_logged(r) for r in caplog.records]
    texts = {
        "error columns": errors,
        "log file": log_file.splitlines(),
        "log records before redaction": records,
        **{f"`{command}`": out.splitlines() for command, out in printed.items()},
    }
    found = {
        where: [f"{v!r} in {line[:80]!r}" for line in lines for v in hits(line)]
        + _scan(lines, set(SEEDED), set())
        for where, lines in texts.items()
    }
    lines = sum(map(len, texts.values()))
    print(
        f"foreign-text scan ({kind}): {len(served)} hostile answers; {lines} lines in"
        f" {len(texts)} places; database and WAL (seen: {wal_seen}) open and closed"
    )
    assert wal_seen
    assert not open_hits and not closed_hits, (open_hits, closed_hits)
    assert not any(found.values()), {k: v for k, v in found.items() if v}
    _assert_they_hold_the_reduced_form(workdir, kind, printed)


# --- the run ------------------------------------------------------------------------------
@contextmanager
def _hostile(kind: TrustKind, harness: TrustHarness) -> Iterator[HostileTrust | HostileHl7Peer]:
    if kind == "hl7v2":
        with HostileHl7Peer() as peer:
            yield peer
        return
    text = (harness.workdir / "ehr-bridge.toml").read_text("utf-8")
    match = re.search(r'base_url = "(http://127\.0\.0\.1:\d+)', text)
    assert match is not None, text
    with HostileTrust(upstream=match.group(1)) as trust:
        yield trust


def _repoint(harness: TrustHarness, trust: HostileTrust | HostileHl7Peer) -> Connection:
    """The connection, now to the hostile trust (same name, store and referrals)."""
    path = harness.workdir / "ehr-bridge.toml"
    text = path.read_text("utf-8")
    if isinstance(trust, HostileHl7Peer):
        send = re.compile(r'(\[connection\.trust\.send\]\nhost = "127\.0\.0\.1"\nport = )\d+')
        text, count = send.subn(rf"\g<1>{trust.port}", text)
    else:
        url = re.compile(r'base_url = "http://127\.0\.0\.1:\d+([^"]*)"')
        text, count = url.subn(rf'base_url = "{trust.url}\g<1>"\nread_attempts = 1', text)
    assert count == 1, text
    path.write_text(text, "utf-8")
    (conn,) = build_connections(load_config(path))
    return conn


def _refuse_every_write_back(harness: TrustHarness, conn: Connection) -> None:
    """Sessions in, then collect and push until every write-back is dead-lettered."""
    for referral in harness.referrals:
        note = "Session one went well; homework agreed."
        harness.submit(score_bundle(referral, "phq9", PHQ9_ITEMS, note=note))
    for _ in range(20):
        run_cycle(conn, harness.store)
        counts = harness.store.outbox_counts(conn.name)
        if counts.get("dead") and not counts.get("pending") and not counts.get("in_flight"):
            return
        time.sleep(0.05)
    raise AssertionError(f"write-backs did not all die: {counts}")


@contextmanager
def _logging_to(workdir: Path) -> Iterator[None]:
    setup_logging("DEBUG", workdir / "logs" / "ehr-bridge.log", stderr=False)
    try:
        yield
    finally:
        _drop_log_handlers()


def _drop_log_handlers() -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_ehr_bridge", False):
            root.removeHandler(handler)
            handler.close()


def _cli(workdir: Path, *args: str) -> dict[str, str]:
    """``ehr-bridge --config <workdir> args``: what it printed, keyed by the command."""
    try:
        result = runner.invoke(
            app, ["--config", str(workdir / "ehr-bridge.toml"), *args], env={"COLUMNS": "200"}
        )
    finally:
        _drop_log_handlers()
    assert result.exception is None or isinstance(result.exception, SystemExit), result
    return {" ".join(args): result.stdout + result.stderr}


def _cli_listings(workdir: Path, store: Store, connection: str) -> dict[str, str]:
    printed: dict[str, str] = {}
    commands = [
        ["status"],
        ["outbox", "list"],
        ["outbox", "list", "--state", "dead"],
        ["referrals", "list"],
        ["quarantine", "list"],
    ]
    commands += [["referrals", "show", r.id] for r in store.list_referrals(connection)]
    for command in commands:
        printed |= _cli(workdir, *command)
        printed |= _cli(workdir, *command, "--json")
    return printed


# --- what was scanned ---------------------------------------------------------------------
def _database_hits(workdir: Path) -> dict[str, list[str]]:
    """Seeded values in the bytes of the database file and its WAL (if there is one)."""
    found = {}
    for suffix in ("", "-wal"):
        path = workdir / f"{DATABASE}{suffix}"
        if path.exists() and hits(path.read_bytes()):
            found[path.name] = hits(path.read_bytes())
    return found


def _as_logged(record: logging.LogRecord) -> str:
    """A record as the code logged it: message and every extra, before any redaction."""
    extras = " ".join(f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD)
    return f"{record.name}: {record.getMessage()} {extras}"


_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


def _assert_every_channel_was_used(workdir: Path, kind: TrustKind, printed: dict[str, str]) -> None:
    """The scan means something only if the trust's refusals reached every place scanned."""
    errors = _stored_errors(workdir)
    assert errors["dead"] and errors["attempts"], errors
    assert kind == "hl7v2" or {"pull", "push"} <= set(errors["runs"]), errors["runs"]
    assert printed["outbox list --state dead --json"].count('"last_error": "') >= 1
    assert kind == "hl7v2" or "last error" in printed["status"]


def _assert_they_hold_the_reduced_form(
    workdir: Path, kind: TrustKind, printed: dict[str, str]
) -> None:
    """Each place shows the status, a known code or field of ours, and the reply's hash."""
    errors = _stored_errors(workdir)
    assert any("reply #" in e for e in errors["dead"]), errors  # the rest: their dependants
    assert any("reply #" in e for e in errors["attempts"]), errors
    assert all("reply #" in e for e in errors["runs"].values()), errors
    assert "reply #" in printed["outbox list --state dead"]
    assert "reply #" in printed["outbox list --state dead --json"]
    assert any("reply #" in out for cmd, out in printed.items() if cmd.startswith("referrals show"))
    assert kind == "hl7v2" or "reply #" in printed["status"]


def _stored_errors(workdir: Path) -> dict[str, Any]:
    with sqlite3.connect(workdir / DATABASE) as db:
        dead = "SELECT last_error FROM outbox WHERE state = 'dead' AND last_error IS NOT NULL"
        attempts = "SELECT error FROM write_attempt WHERE error IS NOT NULL"
        runs = "SELECT flow, error FROM run WHERE error IS NOT NULL ORDER BY id"
        return {
            "dead": [r[0] for r in db.execute(dead)],
            "attempts": [r[0] for r in db.execute(attempts)],
            "runs": dict(db.execute(runs).fetchall()),
        }
