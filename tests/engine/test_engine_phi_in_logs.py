"""The demo at DEBUG: no NHS number, name, contact detail, birth date or note text in any log."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from ehr_bridge.demo import run_demo


def _patient_values(export: dict) -> list[str]:
    values: list[str] = []
    for entry in export["referrals"]:
        patient = entry["referral"].get("patient")
        if not isinstance(patient, dict):
            continue
        for key in (
            "nhs_number",
            "family_name",
            "given_name",
            "email",
            "phone",
            "postcode",
            "birth_date",
        ):
            value = patient.get(key)
            if isinstance(value, str) and len(value) >= 3:
                values.append(value)
        nhs = patient.get("nhs_number")
        if isinstance(nhs, str) and len(nhs) == 10:
            values.append(f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}")
    return values


def _note_fragments(export: dict) -> list[str]:
    fragments: list[str] = []
    for entry in export["referrals"]:
        for note in entry["clinical_notes"]:
            fragments.append(note["text"])
            fragments.extend(s for s in re.split(r"(?<=[.!?])\s+", note["text"]) if len(s) >= 25)
    return fragments


def test_demo_logs_and_output_carry_no_patient_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    printed: list[str] = []
    with caplog.at_level(logging.DEBUG):
        result = run_demo(tmp_path, seed=4, referrals=12, hostile=13, say=printed.append)
    assert result.complete
    export = json.loads((tmp_path / "trust-export.json").read_text("utf-8"))
    texts = {
        "log file": (tmp_path / "logs" / "ehr-bridge.log").read_text("utf-8"),
        "captured records (before redaction)": "\n".join(
            f"{r.getMessage()} {r.__dict__}" for r in caplog.records
        ),
        "printed": "\n".join(printed),
    }
    assert len(caplog.records) > 100, "the demo logged almost nothing: the test would prove little"
    secrets = _patient_values(export)
    notes = _note_fragments(export)
    assert len(secrets) > 50 and len(notes) > 50
    for where, text in texts.items():
        for value in secrets:
            assert not re.search(rf"(?<![\w]){re.escape(value)}(?![\w])", text), (
                f"patient value in {where}"
            )
        for fragment in notes:
            assert fragment not in text, f"note text in {where}"
