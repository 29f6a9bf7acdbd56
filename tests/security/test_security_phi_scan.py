"""PHI scan: the demo and a chaos run with hostile records, every log line and error message.

Scanned: the log files, what the demo printed, the daemons' stderr, and every error text
the state database keeps (quarantine reasons and fields, outbox last errors, run errors,
write-attempt errors, audit reasons and details). Searched for: every seeded NHS number
(also spaced 3-3-4), family and given name, date of birth, e-mail, phone and postcode, of
good and hostile records alike, and every session note (whole and sentence by sentence).
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.demo import run_demo
from ehr_bridge.sim import TrustSimulator
from ehr_bridge.sim.chaos import ChaosSettings, run_chaos
from ehr_bridge.sim.platform import SyntheticPlatform

pytestmark = pytest.mark.slow
PATIENT_KEYS = (
    "nhs_number",
    "family_name",
    "given_name",
    "birth_date",
    "email",
    "phone",
    "postcode",
)
ERROR_COLUMNS = {
    "quarantine": ("reason", "field"),
    "outbox": ("last_error",),
    "run": ("error",),
    "write_attempt": ("error",),
    "audit_event": ("reason", "detail"),
}


def _patient_values(export: dict[str, Any]) -> set[str]:
    values: set[str] = set()
    for entry in export["referrals"]:
        patient = entry["referral"].get("patient")
        if not isinstance(patient, dict):
            continue
        for key in PATIENT_KEYS:
            value = patient.get(key)
            if isinstance(value, str) and len(value) >= 3:
                values.add(value)
            if key == "nhs_number" and isinstance(value, str) and len(value) == 10:
                values.add(f"{value[:3]} {value[3:6]} {value[6:]}")
    return values


def _note_values(platform: SyntheticPlatform) -> set[str]:
    notes = {a.text for a in platform.expected_artefacts() if a.kind == "note" and a.text}
    sentences = {s for n in notes for s in re.split(r"(?<=[.!?])\s+", n) if len(s) >= 25}
    return notes | sentences


def _error_texts(database: Path) -> list[str]:
    texts: list[str] = []
    with sqlite3.connect(database) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        for table, columns in ERROR_COLUMNS.items():
            if table in tables:
                for column in columns:
                    query = f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL"
                    texts += [str(row[0]) for row in db.execute(query)]
    return texts


def _scan(lines: list[str], values: set[str], notes: set[str]) -> list[str]:
    patterns = [re.compile(rf"(?<!\w){re.escape(v)}(?!\w)") for v in sorted(values)]
    hits = []
    for line in lines:
        hits += [f"value {p.pattern[8:-6]!r}" for p in patterns if p.search(line)]
        hits += [f"note {n[:12]!r}..." for n in notes if n in line]
    return hits


def test_demo_and_chaos_logs_and_errors_hold_no_patient_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    printed: list[str] = []
    with caplog.at_level(logging.DEBUG):
        demo = run_demo(tmp_path / "demo", seed=4, referrals=12, hostile=13, say=printed.append)
    assert demo.complete and len(demo.quarantined) >= 13
    export = json.loads((tmp_path / "demo" / "trust-export.json").read_text("utf-8"))
    values = _patient_values(export)
    notes = _note_values(SyntheticPlatform(tmp_path / "demo" / "provider", seed=4))

    chaos = ChaosSettings(
        workdir=tmp_path / "chaos", seed=5, referrals=4, hostile=13, kills=3, kill_every=(0.3, 0.8)
    )
    report = run_chaos(chaos)
    assert report.settled and report.lost == 0 and report.duplicated == 0, report.lines()
    values |= _patient_values(TrustSimulator(seed=5, referrals=4, hostile=13).export())
    notes |= _note_values(SyntheticPlatform(tmp_path / "chaos" / "provider", seed=5))

    sources = {
        "demo log file": (tmp_path / "demo" / "logs" / "ehr-bridge.log").read_text().splitlines(),
        "demo output": printed,
        "demo errors in the state database": _error_texts(tmp_path / "demo/state/ehr-bridge.db"),
        "chaos daemons' stderr": (tmp_path / "chaos" / "daemons.log").read_text().splitlines(),
        "chaos log file": (tmp_path / "chaos" / "logs" / "ehr-bridge.log").read_text().splitlines(),
        "chaos errors in the state database": _error_texts(tmp_path / "chaos/state/ehr-bridge.db"),
    }
    lines = {where: len(found) for where, found in sources.items()}
    hits = {where: _scan(found, values, notes) for where, found in sources.items()}
    print(
        f"PHI scan: {sum(lines.values())} lines {lines}; {len(values)} values, {len(notes)} notes"
    )
    print(f"PHI scan hits: {sum(len(h) for h in hits.values())}")
    assert len(values) > 100 and len(notes) > 50
    assert lines["demo log file"] > 100 and lines["chaos daemons' stderr"] > 50
    assert lines["demo errors in the state database"] >= 13  # the hostile records' reasons
    assert all(not found for found in hits.values()), hits
