"""Retention: payloads of reconciled referrals emptied after the period; hashes, lineage stay."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from security_flow import run_flow
from sqlmodel import select
from typer.testing import CliRunner

from ehr_bridge.cli.app import app
from ehr_bridge.config import SecurityConfig
from ehr_bridge.errors import ConfigError
from ehr_bridge.reports.load import load_episodes
from ehr_bridge.security.retention import purge
from ehr_bridge.store import OutboxRow, QuarantineRow, ResourceRow, Store, utcnow

POLICY = SecurityConfig(retention_days=30)


@pytest.fixture(scope="module")
def finished_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    flow = run_flow(tmp_path_factory.mktemp("finished"), None)
    assert flow.store.outbox_counts("sec") == {"done": len(flow.store.outbox_rows())}
    flow.store.close()
    yield Path(flow.url.removeprefix("sqlite:///"))


@pytest.fixture
def store(finished_db: Path, tmp_path: Path) -> Iterator[Store]:
    shutil.copyfile(finished_db, tmp_path / "state.db")
    opened = Store(f"sqlite:///{tmp_path / 'state.db'}")
    yield opened
    opened.close()


def _rows(store: Store) -> dict[tuple[str, str], ResourceRow]:
    with store.session() as s:
        return {(r.resource_type, r.id): r for r in s.exec(select(ResourceRow)).all()}


def test_nothing_is_purged_before_the_period_is_over(store: Store) -> None:
    counts = purge(store, POLICY)
    assert (counts.referrals, counts.resources, counts.patients) == (0, 0, 0)


def test_after_the_period_notes_answers_and_patients_go_and_hashes_stay(store: Store) -> None:
    before = _rows(store)
    outbox_before = [(r.id, r.state, r.trust_id) for r in store.outbox_rows()]
    counts = purge(store, POLICY, now=utcnow() + timedelta(days=31))
    after = _rows(store)
    emptied = {key for key, row in after.items() if row.purged_at is not None}
    risks = {"Flag", "RiskAssessment", "DetectedIssue"}  # present when a session held a risk
    assert {t for t, _ in emptied} - risks == {
        "Patient",
        "DocumentReference",
        "QuestionnaireResponse",
    }
    assert counts.referrals == len(store.list_referrals("sec")) == 4
    assert counts.resources + counts.patients == len(emptied)
    assert all(after[k].body == "" and after[k].key_id is None for k in emptied)
    assert all(after[k].content_hash == before[k].content_hash for k in before)
    assert [(r.id, r.state, r.trust_id) for r in store.outbox_rows()] == outbox_before
    referral = store.list_referrals("sec")[0]
    assert store.resource("Patient", referral.patient_id) is None
    kept = {r["resourceType"] for r in store.resources_for_referral(referral.id)}
    assert kept == {"ServiceRequest", "Encounter", "Observation", "EpisodeOfCare"}
    episodes = list(load_episodes(store, "sec"))
    assert len(episodes) == 4 and any(e.scores for e in episodes)  # outcome reports still work
    again = purge(store, POLICY, now=utcnow() + timedelta(days=31))
    assert again.resources == again.patients == 0


def test_a_referral_with_an_unsettled_write_back_keeps_its_payloads(store: Store) -> None:
    row = store.outbox_rows()[0]
    with store.session() as s:
        live = s.get(OutboxRow, row.id)
        assert live is not None
        live.state = "dead"
        s.add(live)
    counts = purge(store, POLICY, now=utcnow() + timedelta(days=365))
    assert counts.referrals == 3
    kept = store.resources_for_referral(row.referral_id)
    assert any(r["resourceType"] == "DocumentReference" for r in kept)


def test_a_dry_run_counts_and_changes_nothing(store: Store) -> None:
    counts = purge(store, POLICY, now=utcnow() + timedelta(days=31), dry_run=True)
    assert counts.dry_run and counts.resources > 0
    assert all(row.purged_at is None for row in _rows(store).values())


def test_closed_quarantine_entries_lose_their_record_after_the_period(store: Store) -> None:
    entries = store.quarantine_rows(connection="sec")
    assert len(entries) == 2
    with store.session() as s:
        closed = s.get(QuarantineRow, entries[0].id)
        assert closed is not None
        closed.state, closed.closed_at = "dismissed", utcnow()
        s.add(closed)
    counts = purge(store, POLICY, now=utcnow() + timedelta(days=31))
    assert counts.quarantine == 1
    assert store.quarantine_payload(entries[0].id or 0) is None
    assert store.quarantine_payload(entries[1].id or 0) is not None  # still open: kept
    purged = store.quarantine_entry(entries[0].id or 0)
    assert purged is not None and purged.payload_hash == entries[0].payload_hash


def test_purge_needs_a_retention_period(store: Store) -> None:
    with pytest.raises(ConfigError, match="retention_days"):
        purge(store, SecurityConfig())


def test_retention_purge_command(store: Store, tmp_path: Path) -> None:
    config = tmp_path / "ehr-bridge.toml"
    config.write_text(
        '[database]\nurl = "sqlite:///state.db"\n[security]\nretention_days = 30\n'
        "require_encryption = false  # a test store\n"
    )
    runner = CliRunner()
    result = runner.invoke(app, ["--config", str(config), "retention", "purge", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["referrals"] == 0
    config.write_text(
        '[database]\nurl = "sqlite:///state.db"\n[security]\nrequire_encryption = false\n'
    )
    assert runner.invoke(app, ["--config", str(config), "retention", "purge"]).exit_code == 2
