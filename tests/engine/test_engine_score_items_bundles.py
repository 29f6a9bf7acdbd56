"""A total and its items in different bundles: checked once both are here, never written unchecked.

Real collect over a provider folder and a real Store (SQLite, and PostgreSQL when
``EHR_BRIDGE_TEST_DATABASE_URL`` is set), against the in-memory fake trust.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.adapters.folder import FolderProvider
from ehr_bridge.adapters.memory import MemoryTrust
from ehr_bridge.demo import bundled_mapping
from ehr_bridge.domain.ids import artefact_key
from ehr_bridge.domain.measures import measure_coding, measure_table
from ehr_bridge.domain.referral import ProviderRef
from ehr_bridge.domain.session import build_encounter, build_note, build_score, session_bundle
from ehr_bridge.domain.validate import SessionArtefacts
from ehr_bridge.mapping import load_mapping
from ehr_bridge.sim import TrustSimulator
from ehr_bridge.store import OutboxRow, ReferralRow, Store
from ehr_bridge.sync.bundle_checks import BundleChecker
from ehr_bridge.sync.collect import collect, collect_again
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.deliver import deliver
from ehr_bridge.sync.pull import pull
from support.databases import BACKENDS, database_url

JsonDict = dict[str, Any]
START = datetime(2026, 10, 1, 18, 0, tzinfo=UTC)
PHQ9 = (2, 2, 1, 2, 1, 1, 2, 1, 0)  # total 12
PHQ9_OTHER = (3,) * 9  # total 27


class CrashOnAcknowledge(FolderProvider):
    """The folder adapter, except that the process "dies" at the first acknowledgement."""

    def acknowledge(self, handle: str) -> None:
        raise KeyboardInterrupt("killed between commit and acknowledge")


def _connection(provider: FolderProvider) -> Connection:
    export = TrustSimulator(seed=11, referrals=12).export()
    records = [
        e["referral"] for e in export["referrals"] if e["referral"]["referred_on_to"] == "IESO01"
    ]
    trust = MemoryTrust(records)
    return Connection(
        name="fake",
        mapping=load_mapping(bundled_mapping("iaptus.yaml")),
        source=trust,
        writer=trust,
        provider=provider,
        provider_ref=ProviderRef(code="IESO01", display="Provider"),
        test_connection=True,
    )


@pytest.fixture(params=BACKENDS)
def bridge(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Connection, Store]:
    conn = _connection(FolderProvider(tmp_path / "provider"))
    store = Store(database_url(request.param, tmp_path))
    pull(conn, store)
    deliver(conn, store)
    return conn, store


class Sessions:
    """Provider bundles for one referral, written to the folder as the platform would."""

    def __init__(self, conn: Connection, referral: ReferralRow) -> None:
        self.conn = conn
        self.ids = {"patient_id": referral.patient_id, "service_request_id": referral.id}
        self.order = 0

    def score(
        self, key: str, items: Sequence[int | None] = PHQ9, *, measure: str = "phq9"
    ) -> tuple[JsonDict, JsonDict]:
        """(response, observation) of one completed form; the total agrees with ``items``."""
        return build_score(
            observation_id=f"{key}-o",
            response_id=f"{key}-q",
            encounter_id=f"{key}-e",
            measure_key=measure,
            items=items,
            effective=START + timedelta(minutes=45),
            **self.ids,
        )

    def session(self, key: str, *resources: JsonDict) -> JsonDict:
        """A session bundle: its contact and note, plus ``resources``."""
        encounter = build_encounter(
            encounter_id=f"{key}-e", start=START, end=START + timedelta(minutes=50), **self.ids
        )
        note = build_note(
            document_id=f"{key}-n",
            encounter_id=f"{key}-e",
            text="Session: goals agreed.",
            authored=START + timedelta(minutes=55),
            **self.ids,
        )
        return session_bundle(f"{key}-b", [encounter, *resources, note])

    def items_only(self, key: str, response: JsonDict) -> JsonDict:
        """A bundle of the item answers alone, as a platform sending them late would."""
        return session_bundle(f"{key}-late", [response])

    def offer(self, name: str, bundle: JsonDict) -> None:
        assert isinstance(self.conn.provider, FolderProvider)
        self.order += 1
        path = self.conn.provider.sessions_dir / name
        path.write_text(json.dumps(bundle), encoding="utf-8")
        os.utime(path, ns=(self.order * 10**9, self.order * 10**9))


@pytest.fixture
def sessions(bridge: tuple[Connection, Store]) -> Sessions:
    conn, store = bridge
    return Sessions(conn, store.list_referrals("fake")[0])


def _assessments(store: Store) -> list[OutboxRow]:
    return [r for r in store.outbox_rows(connection="fake") if r.kind == "assessment"]


def _key(kind: str, resource_id: str) -> str:
    return artefact_key("fake", kind, resource_id)


def _run(conn: Connection, store: Store, **options: Any) -> Any:
    return collect(conn, store, workers=0, **options)


# --- items after the total --------------------------------------------------------------
def test_a_total_whose_items_come_later_is_held_then_queued_with_them(
    bridge: tuple[Connection, Store], sessions: Sessions
) -> None:
    conn, store = bridge
    response, observation = sessions.score("s1")
    sessions.offer("1.json", sessions.session("s1", observation))

    first = _run(conn, store)

    assert (first.stored, first.held) == (1, 1)
    kinds = {
        r.kind
        for r in store.outbox_rows(
            connection="fake", referral_id=sessions.ids["service_request_id"]
        )
    }
    assert {"care_contact", "clinical_note"} <= kinds  # the rest of the bundle goes as usual
    assert _assessments(store) == []  # nothing of the score is written back yet
    (hold,) = store.held_scores("fake")
    assert (hold.observation_id, hold.response_id) == ("s1-o", "s1-q")
    assert store.held_summary("fake").count == 1

    sessions.offer("2.json", sessions.items_only("s1", response))
    second = _run(conn, store)

    assert (second.stored, second.held, second.queued) == (1, 0, 1)
    (row,) = _assessments(store)
    assert row.id == _key("assessment", "s1-o")
    assert json.loads(row.context) == {"items": list(PHQ9)}
    assert row.depends_on == _key("care_contact", "s1-e")  # still waits for its session
    assert store.held_scores("fake") == []
    assert store.quarantine_rows(connection="fake") == []


def test_items_that_come_later_and_disagree_quarantine_the_score_alone(
    bridge: tuple[Connection, Store], sessions: Sessions
) -> None:
    conn, store = bridge
    _, observation = sessions.score("s1")  # total 12
    wrong, _ = sessions.score("s1", PHQ9_OTHER)  # the same response id, items summing to 27
    sessions.offer("1.json", sessions.session("s1", observation))
    _run(conn, store)
    late = sessions.session("s2", wrong)  # the items ride in with the next session
    sessions.offer("2.json", late)

    counts = _run(conn, store)

    assert (counts.stored, counts.quarantined, counts.scores_refused) == (1, 0, 1)
    assert _assessments(store) == []
    (entry,) = store.quarantine_rows(connection="fake")
    assert (entry.source, entry.record_ref, entry.code) == ("score", "s1-o", "score_mismatch")
    assert entry.field == "entry[0].resource.valueQuantity.value"
    assert "12" not in entry.reason and "27" not in entry.reason  # rule, never the values
    assert store.held_scores("fake") == []
    assert store.resource("Observation", "s1-o") is None  # a refused score is never reported
    later = {r.resource_id for r in store.outbox_rows(connection="fake")}
    assert {"s2-e", "s2-n"} <= later  # the bundle that brought the items is stored as usual
    error = collect_again(
        conn, store, entry.record_ref, store.quarantine_payload(entry.id or 0) or {}
    )
    assert error is not None and error.code == "score_mismatch"  # retry: still failing, named


# --- items before the total -------------------------------------------------------------
def test_a_total_whose_items_were_stored_before_is_checked_and_queued_at_once(
    bridge: tuple[Connection, Store], sessions: Sessions
) -> None:
    conn, store = bridge
    response, observation = sessions.score("s1")
    sessions.offer("1.json", sessions.items_only("s1", response))
    _run(conn, store)
    sessions.offer("2.json", sessions.session("s1", observation))

    counts = _run(conn, store)

    assert (counts.stored, counts.held) == (1, 0)
    (row,) = _assessments(store)
    assert row.id == _key("assessment", "s1-o")
    assert json.loads(row.context) == {"items": list(PHQ9)}
    assert store.held_scores("fake") == []


def test_a_total_that_disagrees_with_items_stored_before_refuses_its_bundle(
    bridge: tuple[Connection, Store], sessions: Sessions
) -> None:
    conn, store = bridge
    response, _ = sessions.score("s1", PHQ9_OTHER)
    _, observation = sessions.score("s1")
    sessions.offer("1.json", sessions.items_only("s1", response))
    _run(conn, store)
    sessions.offer("2.json", sessions.session("s1", observation))

    counts = _run(conn, store)

    assert (counts.stored, counts.quarantined) == (0, 1)
    (entry,) = store.quarantine_rows(connection="fake")
    assert (entry.source, entry.record_ref, entry.code) == (
        "submission",
        "2.json",
        "score_mismatch",
    )
    assert entry.field == "entry[1].resource.valueQuantity.value"
    kinds = {
        r.kind
        for r in store.outbox_rows(connection="fake")
        if r.kind not in ("referral_status", "risk_alert")  # risks of the stored items
    }
    assert kinds == set()  # nothing of the refused bundle is written back
    assert store.resource("Observation", "s1-o") is None


# --- one batch --------------------------------------------------------------------------
@pytest.mark.parametrize("items_first", [False, True])
def test_a_total_and_its_items_in_one_batch_but_different_bundles(
    bridge: tuple[Connection, Store], sessions: Sessions, items_first: bool
) -> None:
    conn, store = bridge
    response, observation = sessions.score("s1")
    bundles = [sessions.session("s1", observation), sessions.items_only("s1", response)]
    for number, bundle in enumerate(reversed(bundles) if items_first else bundles):
        sessions.offer(f"{number}.json", bundle)

    counts = _run(conn, store, batch_size=10)

    assert (counts.stored, counts.quarantined) == (2, 0)
    (row,) = _assessments(store)
    assert json.loads(row.context) == {"items": list(PHQ9)}
    assert store.held_scores("fake") == []


def test_a_held_score_released_and_refused_in_one_batch(
    bridge: tuple[Connection, Store], sessions: Sessions
) -> None:
    conn, store = bridge
    good_items, good = sessions.score("s1")
    bad_items, _ = sessions.score("s2", PHQ9_OTHER)
    _, bad = sessions.score("s2")
    sessions.offer("1.json", sessions.session("s1", good))
    sessions.offer("2.json", sessions.session("s2", bad))
    sessions.offer("3.json", sessions.items_only("s1", good_items))
    sessions.offer("4.json", sessions.items_only("s2", bad_items))

    counts = _run(conn, store, batch_size=10)

    assert (counts.stored, counts.held, counts.scores_refused) == (4, 2, 1)
    assert [r.resource_id for r in _assessments(store)] == ["s1-o"]
    assert [(e.source, e.record_ref) for e in store.quarantine_rows(connection="fake")] == [
        ("score", "s2-o")
    ]
    assert store.held_scores("fake") == []


# --- totals without items ---------------------------------------------------------------
def _itemless(sessions: Sessions, key: str, measure: str, items: Sequence[int | None]) -> JsonDict:
    _, observation = sessions.score(key, items, measure=measure)
    del observation["derivedFrom"]
    return sessions.session(key, observation)


def test_a_total_without_items_is_refused_by_default(
    bridge: tuple[Connection, Store], sessions: Sessions
) -> None:
    conn, store = bridge
    sessions.offer("1.json", _itemless(sessions, "s1", "phq9", PHQ9))

    counts = _run(conn, store)

    assert (counts.stored, counts.quarantined) == (0, 1)
    (entry,) = store.quarantine_rows(connection="fake")
    assert (entry.code, entry.field) == ("items_missing", "entry[1].resource.derivedFrom")
    assert "total has no item answers" in entry.reason
    written = {r.kind for r in store.outbox_rows(connection="fake")}
    assert written == {"referral_status"}  # only what deliver queued; nothing of the bundle


def test_a_total_without_items_is_written_where_catalogue_and_connection_allow_it(
    bridge: tuple[Connection, Store], sessions: Sessions
) -> None:
    conn, store = bridge
    allowing = replace(conn, itemless_totals=frozenset({"phq9"}))
    sessions.offer("1.json", _itemless(sessions, "s1", "phq9", PHQ9))

    counts = _run(allowing, store)

    assert (counts.stored, counts.quarantined, counts.held) == (1, 0, 0)
    (row,) = _assessments(store)
    assert (row.id, json.loads(row.context)) == (_key("assessment", "s1-o"), {})


def test_a_total_without_items_stays_refused_for_a_measure_whose_row_forbids_it(
    bridge: tuple[Connection, Store], sessions: Sessions
) -> None:
    conn, store = bridge
    table = measure_table(adsm_enabled=True)
    key = next(k for k, m in table.items() if m.enabled and not m.itemless_total_ok)
    allowing = replace(conn, itemless_totals=frozenset({key}), adsm_enabled=True)
    bundle = _itemless(sessions, "s1", "phq9", PHQ9)
    observation = bundle["entry"][1]["resource"]  # recoded as that measure, total in range
    observation["code"]["coding"] = measure_coding(table[key])
    observation["valueQuantity"]["value"] = table[key].total_min
    sessions.offer("1.json", bundle)

    counts = _run(allowing, store)

    assert (counts.stored, counts.quarantined) == (0, 1)
    (entry,) = store.quarantine_rows(connection="fake")
    assert (entry.code, entry.field) == ("items_missing", "entry[1].resource.derivedFrom")


# --- exactly once -----------------------------------------------------------------------
def test_a_bundle_offered_again_while_its_score_is_held_queues_nothing_new(
    bridge: tuple[Connection, Store], sessions: Sessions
) -> None:
    conn, store = bridge
    response, observation = sessions.score("s1")
    bundle = sessions.session("s1", observation)
    sessions.offer("1.json", bundle)
    _run(conn, store)
    (first_hold,) = store.held_scores("fake")
    before = {r.id for r in store.outbox_rows(connection="fake")}
    sessions.offer("1-again.json", bundle)  # the same bundle, offered again
    resent = sessions.session("s1", observation)
    resent["entry"][-1]["resource"]["description"] = "Therapy session note (resent)"
    sessions.offer("1-resent.json", resent)  # the same score in a changed bundle

    counts = _run(conn, store)

    assert (counts.already_stored, counts.stored, counts.held) == (1, 1, 1)
    assert {r.id for r in store.outbox_rows(connection="fake")} == before
    assert store.held_scores("fake") == [first_hold]  # one hold, still dated from the first
    sessions.offer("2.json", sessions.items_only("s1", response))
    sessions.offer("2-again.json", sessions.items_only("s1", response))
    _run(conn, store)
    assert [r.id for r in _assessments(store)] == [_key("assessment", "s1-o")]
    assert store.held_scores("fake") == []


def test_items_that_arrive_twice_queue_the_score_once_and_quarantine_nothing(
    bridge: tuple[Connection, Store], sessions: Sessions
) -> None:
    conn, store = bridge
    response, observation = sessions.score("s1")
    sessions.offer("1.json", sessions.session("s1", observation))
    sessions.offer("2.json", sessions.items_only("s1", response))
    sessions.offer("3.json", sessions.session("s9", response))  # the items again, elsewhere

    _run(conn, store, batch_size=2)  # 1 and 2 together, then 3

    assert [r.id for r in _assessments(store)] == [_key("assessment", "s1-o")]
    assert store.quarantine_rows(connection="fake") == []
    assert store.held_scores("fake") == []


def test_two_totals_derived_from_one_response_are_both_held_and_both_released(
    bridge: tuple[Connection, Store], sessions: Sessions
) -> None:
    conn, store = bridge
    response, observation = sessions.score("s1")
    twin = json.loads(json.dumps(observation))
    twin["id"] = "s1-o2"
    twin["identifier"][0]["value"] = "s1-o2"
    sessions.offer("1.json", sessions.session("s1", observation, twin))
    _run(conn, store)
    assert {h.observation_id for h in store.held_scores("fake")} == {"s1-o", "s1-o2"}
    sessions.offer("2.json", sessions.items_only("s1", response))

    _run(conn, store)

    keys = {r.id for r in _assessments(store)}
    assert keys == {_key("assessment", "s1-o"), _key("assessment", "s1-o2")}
    assert store.held_scores("fake") == []


def test_a_crash_after_the_items_commit_releases_the_score_exactly_once(
    bridge: tuple[Connection, Store], sessions: Sessions, tmp_path: Path
) -> None:
    conn, store = bridge
    response, observation = sessions.score("s1")
    sessions.offer("1.json", sessions.session("s1", observation))
    _run(conn, store)
    sessions.offer("2.json", sessions.items_only("s1", response))
    crashing = replace(conn, provider=CrashOnAcknowledge(tmp_path / "provider"))
    with pytest.raises(KeyboardInterrupt):
        _run(crashing, store)
    assert len(_assessments(store)) == 1 and store.held_scores("fake") == []  # committed

    counts = _run(conn, store)  # the items are offered again after the restart

    assert (counts.already_stored, counts.stored) == (1, 0)
    assert len(_assessments(store)) == 1
    assert store.quarantine_rows(connection="fake") == []


def test_status_counts_held_scores_and_lists_the_overdue(
    bridge: tuple[Connection, Store], sessions: Sessions
) -> None:
    conn, store = bridge
    _, observation = sessions.score("s1")
    sessions.offer("1.json", sessions.session("s1", observation))
    _run(conn, store)
    assert store.held_summary("fake").overdue == []

    summary = store.held_summary("fake", overdue_after=timedelta(seconds=-1))

    assert summary.count == 1 and summary.oldest is not None
    assert [(h.observation_id, h.referral_id) for h in summary.overdue] == [
        ("s1-o", sessions.ids["service_request_id"])
    ]


# --- anxiety-disorder-specific measures -------------------------------------------------
def _pcl5_session(sessions: Sessions, key: str) -> JsonDict:
    """A PCL-5 form (an ADSM: the builders refuse it while the catalogue row is disabled)."""
    measure = measure_table(adsm_enabled=True)["pcl5"]
    items = [2] * measure.item_count
    response, observation = sessions.score(key)
    response["questionnaire"] = measure.questionnaire_url
    response["item"] = [
        {"linkId": str(n), "answer": [{"valueInteger": v}]} for n, v in enumerate(items, 1)
    ]
    observation["code"] = {"coding": measure_coding(measure)}
    observation["valueQuantity"]["value"] = sum(items)
    return sessions.session(key, response, observation)


def test_adsm_scores_are_refused_unless_the_connection_enables_them(
    bridge: tuple[Connection, Store], sessions: Sessions
) -> None:
    conn, store = bridge
    sessions.offer("1.json", _pcl5_session(sessions, "s1"))
    assert _run(conn, store).quarantined == 1
    (entry,) = store.quarantine_rows(connection="fake")
    payload = store.quarantine_payload(entry.id or 0) or {}
    assert collect_again(conn, store, entry.record_ref, payload) is not None

    enabled = replace(conn, adsm_enabled=True)
    assert collect_again(enabled, store, entry.record_ref, payload) is None  # quarantine retry

    assert store.quarantine_rows(connection="fake") == []
    assert [r.resource_id for r in _assessments(store)] == ["s1-o"]


def test_worker_processes_check_adsm_scores_as_the_connection_says(sessions: Sessions) -> None:
    bundles = [_pcl5_session(sessions, f"s{n}") for n in range(4)]
    for adsm_enabled in (False, True):
        with BundleChecker(2, pool_after=0, adsm_enabled=adsm_enabled) as checker:
            verdicts = checker.submit(bundles).result()
        accepted = [isinstance(v, SessionArtefacts) for v in verdicts]
        assert accepted == [adsm_enabled] * 4


def test_status_shows_the_scores_awaiting_items(
    bridge: tuple[Connection, Store], sessions: Sessions
) -> None:
    from ehr_bridge.cli.listings import _held_line, _status_of

    conn, store = bridge
    _, observation = sessions.score("s1")
    sessions.offer("1.json", sessions.session("s1", observation))
    _run(conn, store)

    held = _status_of(store, "fake")["held_scores"]

    assert (held["count"], held["overdue"]) == (1, [])
    assert _held_line(held).startswith("scores awaiting items 1 (oldest held ")
    assert json.dumps(held)  # plain JSON for `status --json`
