"""A whole HL7 v2 connection: REF^I12 in by file and by MLLP, ORU^R01 and MDM^T02 out.

Real config file, real cycles (pull, deliver, the synthetic platform, collect, push), SQLite,
our MLLP listener fed by python-hl7's client, and hl7apy's MLLP server as the trust's
interface engine (it closes the connection after every ACK). The end state is checked at
the peer: every score and note the platform produced arrived exactly once.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hl7.client import MLLPClient

from ehr_bridge.adapters.hl7v2 import Hl7v2Adapter
from ehr_bridge.adapters.hl7v2.er7 import split_messages
from ehr_bridge.adapters.hl7v2.peer import RecordingPeer, uk_referral
from ehr_bridge.adapters.hl7v2.record import decode
from ehr_bridge.config import load_config
from ehr_bridge.sim import TrustSimulator
from ehr_bridge.sim.platform import SyntheticPlatform
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import Connection, build_connections
from ehr_bridge.sync.cycle import run_cycle

MAPPING = Path(__file__).resolve().parents[2] / "mappings" / "hl7v2-ref-i12.yaml"
TOOL_CODES = {"phq9": "720433000", "gad7": "445455005", "wsas": "LOCAL-WSAS"}
CONFIG = """
[database]
url = "sqlite:///state/ehr-bridge.db"

[[connection]]
name = "hl7-trust"
test_connection = true
mapping = "{mapping}"

[connection.provider_org]
code = "IESO01"

[connection.trust]
adapter = "hl7v2"
drop_folder = "hl7/in"
settle_seconds = 0
segments = ["MSH", "RF1", "PRD", "PID", "DG1"]

[connection.trust.listen]
port = 0

[connection.trust.send]
host = "127.0.0.1"
port = {port}
timeout_seconds = 5
receiving_facility = "RXX"
local_id_authority = "RXX"

[connection.provider]
adapter = "folder"
path = "provider"

[connection.retry]
max_attempts = 5
base_delay_seconds = 0.01
max_delay_seconds = 0.05
"""


@dataclass
class Run:
    conn: Connection
    store: Store
    platform: SyntheticPlatform
    peer: RecordingPeer
    referral_ids: set[str]
    reports: list[dict]

    def cycle(self) -> dict:
        def after(flow: str) -> None:
            if flow == "deliver":
                self.platform.step()

        return run_cycle(self.conn, self.store, between=after)


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    workdir = tmp_path_factory.mktemp("hl7-e2e")
    peer = RecordingPeer().start()
    config_path = workdir / "ehr-bridge.toml"
    config_path.write_text(CONFIG.format(mapping=MAPPING, port=peer.port))
    (conn,) = build_connections(load_config(config_path))
    assert isinstance(conn.source, Hl7v2Adapter)
    store = Store(load_config(config_path).database_url())
    referrals = [
        e["referral"]
        for e in TrustSimulator(seed=3, referrals=8).export()["referrals"]
        if e["referral"]["referred_on_to"] == "IESO01"
    ]
    _arrive(conn.source, referrals, workdir)
    run = Run(conn, store, SyntheticPlatform(workdir / "provider", seed=3), peer, set(), [])
    run.referral_ids = {r["id"] for r in referrals}
    try:
        for _ in range(10):
            run.reports.append(run.cycle())
            counts = store.outbox_counts(conn.name)
            if counts.get("done") and not counts.get("pending") and not counts.get("in_flight"):
                break
        yield run
    finally:
        store.close()
        peer.stop()


def _arrive(adapter: Hl7v2Adapter, referrals: list[dict], workdir: Path) -> None:
    """Half the referrals as dropped files (LF endings), half over MLLP (python-hl7)."""
    listener = adapter.listener(port=0).start()
    try:
        with MLLPClient("127.0.0.1", listener.port) as client:
            for n, referral in enumerate(referrals):
                message = uk_referral(referral)
                if n % 2:
                    reply = client.send_message(message)
                    assert b"MSA|AA|" in reply
                else:
                    (workdir / "hl7" / "in" / f"{referral['id']}.hl7").write_text(
                        message.replace("\r", "\n")
                    )
    finally:
        listener.stop()


def _delivered_trust_ids(run: Run) -> set[str]:
    found = set()
    for path in run.platform.referrals_dir.glob("*.json"):
        for entry in json.loads(path.read_text())["entry"]:
            if entry["resource"]["resourceType"] == "ServiceRequest":
                found.add(entry["resource"]["identifier"][0]["value"])
    return found


def _record(message: str) -> dict:
    return decode(split_messages(message)[0], ZoneInfo("UTC"))


def test_every_referral_is_delivered(settled: Run) -> None:
    assert len(settled.referral_ids) >= 4
    assert _delivered_trust_ids(settled) == settled.referral_ids


def test_every_score_arrives_once_as_an_oru_r01(settled: Run) -> None:
    expected = [a for a in settled.platform.expected_artefacts() if a.kind == "score"]
    assert expected, "the platform produced no scores"
    oru = [_record(m) for m in settled.peer.messages("ORU^R01")]
    received = [r for r in oru if r["OBX"][0]["3"][0]["1"] != "RISK-ALERT"]
    risks = [r for r in oru if r["OBX"][0]["3"][0]["1"] == "RISK-ALERT"]
    risky = [a for a in expected if a.measure == "phq9" and (a.items[8] or 0) >= 1]
    assert len(risks) == len(risky) > 0  # each PHQ-9 with item 9 above zero: one risk alert
    assert Counter(
        # NM allows decimals: a WSAS total pro-rated for a missing item is one (6.25)
        (r["OBX"][0]["3"][0]["1"], float(r["OBX"][0]["5"][0]["1"]))
        for r in received
    ) == Counter((TOOL_CODES[a.measure], a.total) for a in expected if a.measure)
    assert {r["OBR"][0]["2"][0]["1"] for r in received} <= settled.referral_ids


def test_every_note_arrives_once_as_an_mdm_t02_with_its_text(settled: Run) -> None:
    expected = [a.text for a in settled.platform.expected_artefacts() if a.kind == "note"]
    assert expected, "the platform produced no notes"
    received = [_record(m) for m in settled.peer.messages("MDM^T02")]
    texts = ["\n".join(r.get("1", "") for r in m["OBX"][0]["5"]) for m in received]
    assert sorted(texts) == sorted(expected)
    assert all(m["TXA"][0]["17"][0]["1"] == "AU" for m in received)
    assert all(m["TXA"][0]["12"][0]["1"] == m["MSH"][0]["10"][0]["1"] for m in received)


def test_only_declared_kinds_are_queued_and_nothing_was_sent_twice(settled: Run) -> None:
    rows = settled.store.outbox_rows(connection=settled.conn.name)
    assert {r.kind for r in rows} == {"assessment", "clinical_note", "risk_alert"}
    assert {r.state for r in rows} == {"done"}
    assert settled.peer.deliveries == len(settled.peer.received) == len(rows)


def test_a_further_cycle_changes_nothing(settled: Run) -> None:
    before = settled.peer.deliveries
    report = settled.cycle()
    assert report["pull"]["stored"] == 0
    assert report["push"]["written"] == 0
    assert settled.peer.deliveries == before
