"""The hand-computed fixture cohort, two ways: as read-model episodes and as a real store.

``fixtures/cohort/cohort.json`` describes each referral compactly (dates, codes, totals,
note texts). ``cohort_episodes`` turns it straight into ``Episode`` objects for the pure
report functions; ``cohort_store`` builds the same referrals as FHIR through the domain
builders and saves them the way pull and collect do, so the loader is tested on what the
engine really stores. Both must give the numbers in ``expected.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.config import ReportsConfig
from ehr_bridge.domain.facts import PatientFacts, ReferralFacts
from ehr_bridge.domain.ids import resource_id
from ehr_bridge.domain.measures import MEASURES, measure_coding
from ehr_bridge.domain.referral import ProviderRef, build_referral_resources
from ehr_bridge.domain.session import (
    build_encounter,
    build_episode_end,
    build_note,
    build_score,
    score_quantity,
)
from ehr_bridge.reports import (
    Episode,
    Period,
    Protocol,
    ReportOptions,
    Score,
    Session,
    count_phrases,
    protocols_from_config,
)
from ehr_bridge.reports.governance import all_phrases
from ehr_bridge.reports.times import Precision, read_when
from ehr_bridge.store import PulledReferral, Store

COHORT_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "cohort"
PROVIDER = ProviderRef(code="PROV01", display="Online therapy provider (test)")
SESSION_MINUTES = 45

Raw = dict[str, Any]


@pytest.fixture(scope="session")
def cohort() -> Raw:
    return json.loads((COHORT_DIR / "cohort.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def expected() -> Raw:
    return json.loads((COHORT_DIR / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def period(cohort: Raw) -> Period:
    return Period(
        date.fromisoformat(cohort["period"]["from"]), date.fromisoformat(cohort["period"]["to"])
    )


@pytest.fixture(scope="session")
def protocols(cohort: Raw) -> tuple[Protocol, ...]:
    return protocols_from_config(ReportsConfig.model_validate(cohort["reports"]))


@pytest.fixture(scope="session")
def options(period: Period, protocols: tuple[Protocol, ...]) -> ReportOptions:
    return ReportOptions(period=period, protocols=protocols)


def session_start(text: str) -> datetime:
    """A fixture start: with its own offset if it has one, else Europe/London wall time.

    A date-only start is midnight Europe/London, as the loader reads one (reports.times).
    """
    when = read_when(text)
    assert when is not None, text
    return when.at


def _precision(text: str) -> Precision:
    when = read_when(text)
    assert when is not None, text
    return when.precision


def episode_from_fixture(raw: Raw, phrases: list[str]) -> Episode:
    sessions, scores = [], []
    for number, item in enumerate(raw["sessions"], start=1):
        start = session_start(item["start"])
        notes = (count_phrases(item["note"], phrases),) if "note" in item else ()
        sessions.append(
            Session(
                id=f"{raw['id']}-s{number}",
                start=start,
                appointment_type=item["type"],
                attendance=item["attendance"],
                therapist=item.get("therapist"),
                notes=notes,
                precision=_precision(item["start"]),
            )
        )
        for key, total in item.get("scores", {}).items():
            scores.append(Score(key, total, start + timedelta(minutes=5)))
    return Episode(
        referral_id=f"id-{raw['id']}",
        trust_referral_id=raw["id"],
        received=date.fromisoformat(raw["received"]),
        presenting_problem=raw["problem"],
        sessions=tuple(sessions),
        scores=tuple(scores),
        ended=date.fromisoformat(raw["end"]) if raw["end"] else None,
        end_code=raw["end_code"],
    )


@pytest.fixture(scope="session")
def cohort_episodes(cohort: Raw, protocols: tuple[Protocol, ...]) -> list[Episode]:
    phrases = all_phrases(protocols)
    return [episode_from_fixture(raw, phrases) for raw in cohort["episodes"]]


# --- the same cohort as stored FHIR ---------------------------------------------------------


def items_for(key: str, total: float) -> list[int | None]:
    """Item answers summing to ``total`` (filled item by item up to the item maximum).

    A decimal total of a measure that allows a missing item (WSAS 18.75) is the pro-rated
    sum of the answered items: the last item is left unanswered.
    """
    measure = MEASURES[key]
    if total != int(total):
        answered = measure.item_count - 1
        present = items_for_sum(measure.item_max, answered, total * answered / measure.item_count)
        return [*present, None]
    return items_for_sum(measure.item_max, measure.item_count, total)


def items_for_sum(item_max: int, count: int, total: float) -> list[int | None]:
    """``count`` answers of at most ``item_max`` adding up to the whole number ``total``."""
    assert total == int(total), f"cannot make items for {total}"
    items: list[int | None] = []
    left = int(total)
    for _ in range(count):
        value = min(item_max, left)
        items.append(value)
        left -= value
    assert left == 0, f"items cannot total {total}"
    return items


def _pull(store: Store, connection: str, raw: Raw) -> tuple[str, str]:
    facts = ReferralFacts(
        trust_referral_id=raw["id"],
        received_date=date.fromisoformat(raw["received"]),
        source_of_referral="A1",
        presenting_problem=raw["problem"],
        referred_on_to=PROVIDER.code,
        patient=PatientFacts(local_id=f"P-{raw['id']}"),
    )
    made = build_referral_resources(
        connection, PROVIDER, facts, today=date(2026, 1, 1), allow_test_range=True
    )
    pulled = PulledReferral(
        trust_referral_id=raw["id"],
        source_hash=f"hash-{raw['id']}",
        source_version=None,
        status="active",
        patient_local_id=f"P-{raw['id']}",
        nhs_number=None,
        patient=made.patient,
        service_request=made.service_request,
    )
    store.save_pull_page(connection, [pulled], [], None)
    return made.service_request["id"], made.patient["id"]


def _adsm_observation(ids: dict[str, str], key: str, total: int, at: datetime) -> Raw:
    """An ADSM total, hand-built: the domain builder refuses disabled measures on purpose."""
    return {
        "resourceType": "Observation",
        "id": resource_id("cohort", "Observation", f"{ids['encounter']}|{key}"),
        "status": "final",
        "code": {"coding": measure_coding(MEASURES[key])},
        "subject": {"reference": f"Patient/{ids['patient']}"},
        "basedOn": [{"reference": f"ServiceRequest/{ids['sr']}"}],
        "encounter": {"reference": f"Encounter/{ids['encounter']}"},
        "effectiveDateTime": at.isoformat(),
        "valueQuantity": score_quantity(total),
    }


def _as_stored(resource: Raw, item: Raw) -> Raw:
    """With ``stored_as_written``, the fixture's literal start (date-only, no offset) as stored.

    The builders always write full date-times with offsets; stores also hold what older
    collects accepted, so such a session's start and score times are written as given.
    """
    raw_start = item["start"]
    if not item.get("stored_as_written"):
        return resource
    if resource["resourceType"] == "Encounter":
        resource["period"]["start"] = raw_start
        resource["period"].pop("end", None)
    elif resource["resourceType"] == "Observation":
        resource["effectiveDateTime"] = raw_start
    return resource


def _session_resources(connection: str, ids: dict[str, str], item: Raw) -> Iterator[Raw]:
    for resource in _built_session_resources(connection, ids, item):
        yield _as_stored(resource, item)


def _built_session_resources(connection: str, ids: dict[str, str], item: Raw) -> Iterator[Raw]:
    start = session_start(item["start"])
    end = start + timedelta(minutes=SESSION_MINUTES)
    yield build_encounter(
        encounter_id=ids["encounter"],
        patient_id=ids["patient"],
        service_request_id=ids["sr"],
        start=start,
        end=end,
        appointment_type=item["type"],
        attendance=item["attendance"],
        therapist=item.get("therapist"),
    )
    for key, total in item.get("scores", {}).items():
        scored = start + timedelta(minutes=5)
        if not MEASURES[key].enabled:
            yield _adsm_observation(ids, key, total, scored)
            continue
        yield from build_score(
            observation_id=resource_id(connection, "Observation", f"{ids['encounter']}|{key}"),
            response_id=resource_id(connection, "QR", f"{ids['encounter']}|{key}"),
            patient_id=ids["patient"],
            service_request_id=ids["sr"],
            encounter_id=ids["encounter"],
            measure_key=key,
            items=items_for(key, total),
            effective=scored,
        )
    if "note" in item:
        yield build_note(
            document_id=resource_id(connection, "DocumentReference", ids["encounter"]),
            patient_id=ids["patient"],
            service_request_id=ids["sr"],
            encounter_id=ids["encounter"],
            text=item["note"],
            authored=end + timedelta(minutes=10),
            author=item.get("therapist"),
        )


def _collect(store: Store, connection: str, raw: Raw, sr_id: str, patient_id: str) -> None:
    resources: list[Raw] = []
    for number, item in enumerate(raw["sessions"], start=1):
        encounter = resource_id(connection, "Encounter", f"{raw['id']}|{number}")
        ids = {"sr": sr_id, "patient": patient_id, "encounter": encounter}
        resources.extend(_session_resources(connection, ids, item))
    if raw["end"]:
        resources.append(
            build_episode_end(
                episode_id=resource_id(connection, "EpisodeOfCare", raw["id"]),
                patient_id=patient_id,
                service_request_id=sr_id,
                start=date.fromisoformat(raw["received"]),
                end=date.fromisoformat(raw["end"]),
                end_code=raw["end_code"],
            )
        )
    if resources:
        store.save_submission(connection, raw["id"], f"bundle-{raw['id']}", sr_id, resources, [])


def fill_store(store: Store, cohort: Raw) -> None:
    """Every cohort referral pulled, then its sessions collected, as the engine stores them."""
    connection = cohort["connection"]
    for raw in cohort["episodes"]:
        sr_id, patient_id = _pull(store, connection, raw)
        _collect(store, connection, raw, sr_id, patient_id)


@pytest.fixture(scope="session")
def cohort_db(tmp_path_factory: pytest.TempPathFactory, cohort: Raw) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('cohort') / 'state.db'}"
    store = Store(url)
    try:
        fill_store(store, cohort)
    finally:
        store.close()
    return url


@pytest.fixture
def cohort_store(cohort_db: str) -> Iterator[Store]:
    store = Store(cohort_db)
    yield store
    store.close()


# --- the ADSM cohort (fixtures/cohort/adsm.json, working in ADSM.md) -----------------------


@pytest.fixture(scope="session")
def adsm_cohort() -> Raw:
    return json.loads((COHORT_DIR / "adsm.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def adsm_expected() -> Raw:
    return json.loads((COHORT_DIR / "adsm-expected.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def adsm_period(adsm_cohort: Raw) -> Period:
    period = adsm_cohort["period"]
    return Period(date.fromisoformat(period["from"]), date.fromisoformat(period["to"]))


@pytest.fixture(scope="session")
def adsm_episodes(adsm_cohort: Raw) -> list[Episode]:
    return [episode_from_fixture(raw, []) for raw in adsm_cohort["episodes"]]


@pytest.fixture(scope="session")
def adsm_db(tmp_path_factory: pytest.TempPathFactory, adsm_cohort: Raw) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('adsm') / 'state.db'}"
    store = Store(url)
    try:
        fill_store(store, adsm_cohort)
    finally:
        store.close()
    return url
