"""A pull page as a few set-based statements, for the referrals whose identity is plain.

Most referrals on a page are a new or changed trust record of a patient we hold nothing
special about: no merge, no operator link, no NHS number change, and no other referral of
the page touching the same patient. For those, the ORM's per-row bookkeeping (about 2 ms
a referral) buys nothing; their patients, resources, ledger rows and versions are written
with one ``INSERT ... ON CONFLICT`` each (``store.bulk``), in the page's transaction.

Everything else takes the row-by-row path in ``Store._upsert_referral``, which records
identity changes and redraws patient links. ``split_page`` decides, from what is stored
at the start of the page, and errs towards the careful path: a patient any careful
referral touches (before or after the change) is kept off the fast path altogether, so
the two paths never write the same patient and their order cannot matter.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, update
from sqlmodel import Session, col, select

from ehr_bridge.security.crypto import PayloadCipher
from ehr_bridge.store.bulk import (
    canonical_json,
    chunks,
    insert_all,
    resource_row,
    text_hash,
    upsert,
    upsert_resources,
)
from ehr_bridge.store.models import (
    PatientLinkRow,
    PatientRow,
    ReferralRow,
    ReferralVersionRow,
)
from ehr_bridge.store.values import PulledReferral, Restamp

JsonDict = dict[str, Any]

_PATIENTS: Table = PatientRow.__table__  # type: ignore[attr-defined]
_REFERRALS: Table = ReferralRow.__table__  # type: ignore[attr-defined]
_VERSIONS: Table = ReferralVersionRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class _Stored:
    """What the page's lookups found for one patient id."""

    nhs_number: str | None
    active: bool
    merged_into: str | None


def _natural(pulled: PulledReferral) -> str:
    return pulled.natural_patient_id or str(pulled.patient["id"])


def split_page(
    s: Session, referrals: Sequence[PulledReferral]
) -> tuple[list[PulledReferral], list[PulledReferral]]:
    """(plain referrals for the set-based path, the rest for the careful path, in order)."""
    ids = [str(r.service_request["id"]) for r in referrals]
    naturals = [_natural(r) for r in referrals]
    before = _stored_naturals(s, ids)
    patients = _stored_patients(s, naturals)
    kept = _patients_keeping_others(s, naturals)
    id_counts = Counter(ids)
    numbers: dict[str, set[str | None]] = defaultdict(set)
    for pulled, natural in zip(referrals, naturals, strict=True):
        numbers[natural].add(pulled.nhs_number)

    def plain(pulled: PulledReferral, rid: str, natural: str) -> bool:
        stored = patients.get(natural)
        return (
            pulled.natural_patient_id in (None, pulled.patient["id"])
            and id_counts[rid] == 1
            and len(numbers[natural]) == 1
            and before.get(rid, natural) == natural
            and natural not in kept
            and (
                stored is None
                or (
                    stored.nhs_number == pulled.nhs_number
                    and stored.active
                    and not stored.merged_into
                )
            )
        )

    verdicts = [plain(*triple) for triple in zip(referrals, ids, naturals, strict=True)]
    touched = {n for n, ok in zip(naturals, verdicts, strict=True) if not ok}
    touched |= {before[i] for i, ok in zip(ids, verdicts, strict=True) if not ok and i in before}
    fast: list[PulledReferral] = []
    careful: list[PulledReferral] = []
    for pulled, natural, ok in zip(referrals, naturals, verdicts, strict=True):
        (fast if ok and natural not in touched else careful).append(pulled)
    return fast, careful


def _stored_naturals(s: Session, referral_ids: Sequence[str]) -> dict[str, str]:
    """Referral id -> the patient its stored version names."""
    found: dict[str, str] = {}
    for chunk in chunks(referral_ids):
        query = select(
            ReferralRow.id, ReferralRow.patient_id, ReferralRow.natural_patient_id
        ).where(col(ReferralRow.id).in_(chunk))
        for rid, patient_id, natural in s.exec(query):
            found[rid] = natural or patient_id
    return found


def _stored_patients(s: Session, patient_ids: Sequence[str]) -> dict[str, _Stored]:
    found: dict[str, _Stored] = {}
    for chunk in chunks(patient_ids):
        query = select(
            PatientRow.id, PatientRow.nhs_number, PatientRow.active, PatientRow.merged_into
        ).where(col(PatientRow.id).in_(chunk))
        for pid, nhs_number, active, merged_into in s.exec(query):
            found[pid] = _Stored(nhs_number, bool(active), merged_into)
    return found


def _patients_keeping_others(s: Session, patient_ids: Sequence[str]) -> set[str]:
    """Patients another one was linked or merged into: their Patient carries links."""
    kept: set[str] = set()
    for chunk in chunks(patient_ids):
        linked = select(PatientRow.merged_into).where(col(PatientRow.merged_into).in_(chunk))
        merged = select(PatientLinkRow.patient_id).where(
            PatientLinkRow.kind == "trust_merge",
            col(PatientLinkRow.ended_at).is_(None),
            col(PatientLinkRow.patient_id).in_(chunk),
        )
        kept.update(str(pid) for pid in s.exec(linked) if pid)
        kept.update(str(pid) for pid in s.exec(merged))
    return kept


def save_plain(
    s: Session,
    cipher: PayloadCipher,
    connection: str,
    referrals: Sequence[PulledReferral],
    now: datetime,
) -> None:
    """Write plain referrals exactly as the careful path would, set by set."""
    if not referrals:
        return
    patients, resources, ledger, versions = [], [], [], []
    for pulled in referrals:
        patient, request = pulled.patient, pulled.service_request
        patient_json, request_json = canonical_json(patient), canonical_json(request)
        # canonical_json([a, b]) is "[" + a + "," + b + "]": the careful path's FHIR hash
        fhir_hash = text_hash(f"[{patient_json},{request_json}]")
        pid, rid = str(patient["id"]), str(request["id"])
        patients.append(
            {
                "id": pid,
                "connection": connection,
                "local_id": pulled.patient_local_id,
                "nhs_number": pulled.nhs_number,
                "updated_at": now,
                "active": True,
                "merged_into": None,
            }
        )
        resources.append(
            resource_row(
                cipher, connection, None, patient, patient_json, text_hash(patient_json), now
            )
        )
        resources.append(
            resource_row(
                cipher, connection, rid, request, request_json, text_hash(request_json), now
            )
        )
        row = {
            "id": rid,
            "connection": connection,
            "trust_referral_id": pulled.trust_referral_id,
            "patient_id": pid,
            "source_hash": pulled.source_hash,
            "source_version": pulled.source_version,
            "fhir_hash": fhir_hash,
            "status": pulled.status,
            "delivered_hash": None,
            "delivered_at": None,
            "first_pulled_at": now,
            "last_pulled_at": now,
            "natural_patient_id": pid,
            "meaning_hash": pulled.meaning_hash,
        }
        ledger.append(row)
        versions.append({**_version(row, now), "echo": pulled.echo})
    upsert(s, _PATIENTS, patients, keys=("id",), update=("nhs_number", "updated_at"))
    upsert_resources(s, resources)
    upsert(s, _REFERRALS, ledger, keys=("id",), update=_LEDGER_UPDATES)
    insert_all(s, _VERSIONS, versions)


_LEDGER_UPDATES = (
    "source_hash",
    "source_version",
    "fhir_hash",
    "status",
    "last_pulled_at",
    "patient_id",
    "natural_patient_id",
    "meaning_hash",
)


def restamp(s: Session, connection: str, restamps: Sequence[Restamp], now: datetime) -> None:
    """Remember the raw hash of records that changed in form only: no version, no delivery."""
    if not restamps:
        return
    statement = (
        update(_REFERRALS)
        .where(
            _REFERRALS.c.connection == connection,
            _REFERRALS.c.trust_referral_id == bindparam("ref"),
        )
        .values(
            source_hash=bindparam("digest"),
            source_version=bindparam("version"),
            last_pulled_at=now,
        )
    )
    rows = [
        {"ref": r.trust_referral_id, "digest": r.source_hash, "version": r.source_version}
        for r in restamps
    ]
    s.connection().execute(statement, rows)


def settle_echoes(s: Session, referrals: Sequence[PulledReferral]) -> None:
    """Mark echo versions as the provider's already: it wrote what they reflect.

    The pull flags an echo only when the provider held the stored version, so the new FHIR
    is what the provider had plus what the provider itself wrote back.
    """
    ids = [str(r.service_request["id"]) for r in referrals if r.echo]
    for chunk in chunks(ids):
        s.execute(
            update(_REFERRALS)
            .where(_REFERRALS.c.id.in_(chunk))
            .values(delivered_hash=_REFERRALS.c.fhir_hash)
        )


def _version(row: JsonDict, now: datetime) -> JsonDict:
    keys = ("connection", "source_version", "source_hash", "fhir_hash", "patient_id", "status")
    return {"referral_id": row["id"], "pulled_at": now, **{k: row[k] for k in keys}}
