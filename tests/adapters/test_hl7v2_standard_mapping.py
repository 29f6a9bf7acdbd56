"""The NHS number in PID-3 as UK feeds write the CX: by assigning authority, type, or both.

CX-4 (assigning authority, an HD: namespace & universal id & its type) says who issued the
identifier and CX-5 (identifier type, table 0203) what kind it is. UK feeds send the NHS
number as ``^^^NHS^NH``, ``^^^NHS`` (no type), ``^^^NHS&2.16.840.1.113883.2.1.4.1&ISO``,
or ``^^^^NH`` (no authority). Each message goes through the drop-folder source and the
``hl7v2-ref-i12`` mapping.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ehr_bridge.adapters.hl7v2.inbox import Inbox
from ehr_bridge.adapters.hl7v2.source import DropFolderSource
from ehr_bridge.mapping import Mapping, load_mapping

ROOT = Path(__file__).resolve().parents[2]
NHS = "9434765919"
OID = "2.16.840.1.113883.2.1.4.1"  # the NHS number's OID


@pytest.fixture(scope="module")
def mapping() -> Mapping:
    return load_mapping(ROOT / "mappings" / "hl7v2-ref-i12.yaml")


def _facts_patient(mapping: Mapping, tmp_path: Path, pid_3: str) -> tuple[str | None, str | None]:
    """(NHS number, local id) the mapping reads from a referral with this PID-3."""
    text = "\r".join(
        [
            "MSH|^~\\&|IAPTUS|RXX|EHR-BRIDGE|IESO01|20261126093000+0000||REF^I12^REF_I12|C-1|P|2.5",
            "RF1|A|||||SR1^IAPTUS|20261120||20261121|A1",
            "PRD|RT|IESO DIGITAL HEALTH|||||IESO01^ODS",
            f"PID|1||{pid_3}||SMITH^JOHN||19850214|M",
        ]
    )
    inbox = Inbox(tmp_path / "drop", tmp_path / "drop" / "received", settle_seconds=0)
    inbox.ensure()
    (inbox.drop / "m.hl7").write_text(text)
    source = DropFolderSource(inbox, zone=ZoneInfo("Europe/London"))
    (record,) = source.fetch_referrals(updated_since=None, page=None).records
    patient = mapping.referral_facts(record).patient
    return patient.nhs_number, patient.local_id


@pytest.mark.parametrize(
    "pid_3",
    [
        f"{NHS}^^^NHS^NH~L1^^^RXX^MR",
        f"{NHS}^^^NHS~L1^^^RXX^MR",  # authority NHS, no identifier type
        f"L1^^^RXX^MR~{NHS}^^^NHS",  # in any repetition
        f"{NHS}^^^NHS&{OID}&ISO^NH~L1^^^RXX^MR",
        f"{NHS}^^^NHS&{OID}&ISO~L1^^^RXX^MR",
        f"{NHS}^^^&{OID}&ISO~L1^^^RXX^MR",  # the authority by its OID alone
        f"{NHS}^^^^NH~L1^^^RXX^MR",  # type NH, no authority: common in UK feeds
        f"999 000 0000^^^RXX^PI~{NHS}^^^NHS^NH~L1^^^RXX^MR",  # another identifier first
    ],
)
def test_the_nhs_number_is_found_by_authority_type_or_both(
    mapping: Mapping, tmp_path: Path, pid_3: str
) -> None:
    assert _facts_patient(mapping, tmp_path, pid_3) == (NHS, "L1")


@pytest.mark.parametrize(
    "pid_3",
    [
        f"{NHS}^^^NHS^MR",  # type MR: the trust's own number, whoever issued it
        f"{NHS}^^^RXX^NH~L1^^^RXX^MR",  # NH from another authority: not the NHS's number
        f"{NHS}^^^NHS^PI~L1^^^RXX^MR",  # another type from the NHS authority
        f"{NHS}~L1^^^RXX^MR",  # neither authority nor type
    ],
)
def test_a_repetition_that_does_not_say_nhs_number_is_not_taken_for_one(
    mapping: Mapping, tmp_path: Path, pid_3: str
) -> None:
    nhs_number, local_id = _facts_patient(mapping, tmp_path, pid_3)
    assert nhs_number is None
    assert local_id == (NHS if pid_3.endswith("^NHS^MR") else "L1")
