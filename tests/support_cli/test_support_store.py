"""The support history in the store, on SQLite and PostgreSQL: audit, identity, repairs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel

from ehr_bridge.store import AuditEntry, NewOutboxItem, PulledReferral, Store
from support.databases import BACKENDS, database_url


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    store = Store(database_url(request.param, tmp_path))
    yield store
    store.close()


def pulled(
    trust_id: str,
    patient_id: str,
    *,
    nhs: str | None = None,
    source_hash: str = "h1",
    natural: str | None = None,
) -> PulledReferral:
    patient = {"resourceType": "Patient", "id": patient_id}
    request = {
        "resourceType": "ServiceRequest",
        "id": f"sr-{trust_id}",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    local = f"L-{natural or patient_id}"
    return PulledReferral(
        trust_id, source_hash, "1", "active", local, nhs, patient, request, natural
    )


def test_the_schema_matches_the_models_after_migrating(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_the_audit_log_refuses_update_and_delete(store: Store) -> None:
    store.record_audit(AuditEntry("test.action", "alice", "because", detail={"n": 1}))
    for statement in ("UPDATE audit_event SET actor = 'mallory'", "DELETE FROM audit_event"):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as connection:
            connection.execute(text(statement))
    (entry,) = store.audit_events()
    assert (entry.actor, entry.action, entry.reason) == ("alice", "test.action", "because")


def test_audit_filters_and_limit_keep_the_newest(store: Store) -> None:
    for n in range(5):
        store.record_audit(AuditEntry(f"a.{n % 2}", "bob", referral_id=f"r{n % 2}"))
    assert [e.action for e in store.audit_events(referral_id="r1")] == ["a.1", "a.1"]
    assert [e.referral_id for e in store.audit_events(limit=2)] == ["r1", "r0"]
    assert len(store.audit_events(action="a.")) == 5


def test_versions_and_deliveries_are_kept(store: Store) -> None:
    store.save_pull_page("c", [pulled("1", "p1")], [], None)
    store.mark_delivered("sr-1", "x", [], ["sr-0"])
    store.save_pull_page("c", [pulled("1", "p1", source_hash="h2")], [], None)
    assert [v.source_hash for v in store.referral_versions("sr-1")] == ["h1", "h2"]
    (delivery,) = store.deliveries("sr-1")
    assert delivery.fhir_hash == "x" and delivery.episodes == '["sr-0"]'


def test_nhs_number_added_corrected_and_removed_are_history(store: Store) -> None:
    for n, nhs in enumerate([None, "9990000018", "9990000026", None]):
        store.save_pull_page("c", [pulled("1", "p1", nhs=nhs, source_hash=f"h{n}")], [], None)
    kinds = [e.kind for e in store.patient_history("p1")]
    assert kinds == ["nhs_number_added", "nhs_number_corrected", "nhs_number_removed"]
    actions = [e.action for e in store.audit_events(referral_id="sr-1")]
    assert actions == [f"identity.{kind}" for kind in kinds]


def test_a_merge_retires_the_patient_no_referral_names_and_links_both(store: Store) -> None:
    store.save_pull_page("c", [pulled("1", "p1"), pulled("2", "p2")], [], None)
    changes = store.save_pull_page("c", [pulled("2", "p1", source_hash="h2")], [], None)
    assert changes == [("sr-2", "trust_merge")]
    old, kept = store.patient("p2"), store.patient("p1")
    assert old is not None and not old.active and kept is not None and kept.active
    assert store.resource("Patient", "p2")["link"] == [
        {"other": {"reference": "Patient/p1"}, "type": "replaced-by"}
    ]
    assert store.resource("Patient", "p1")["link"][0]["type"] == "replaces"
    assert store.had_patient("sr-2", "p2") and not store.had_patient("sr-1", "p2")


def test_a_patient_named_again_after_a_merge_is_active_again(store: Store) -> None:
    store.save_pull_page("c", [pulled("1", "p1"), pulled("2", "p2")], [], None)
    store.save_pull_page("c", [pulled("2", "p1", source_hash="h2")], [], None)
    store.save_pull_page("c", [pulled("2", "p2", source_hash="h3")], [], None)
    assert store.patient("p2").active  # type: ignore[union-attr]
    assert "link" not in store.resource("Patient", "p1")  # type: ignore[operator]


def test_link_moves_referrals_and_unlink_gives_them_back(store: Store) -> None:
    store.save_pull_page("c", [pulled("1", "p1"), pulled("2", "p2")], [], None)
    for referral in store.list_referrals("c"):
        store.mark_delivered(referral.id, referral.fhir_hash, [])
    assert store.link_patients("p1", "p2", actor="alice", reason="same person") == ["sr-2"]
    moved = store.referral("sr-2")
    assert moved is not None and moved.patient_id == "p1" and moved.natural_patient_id == "p2"
    assert store.resource("ServiceRequest", "sr-2")["subject"]["reference"] == "Patient/p1"
    assert [r.id for r in store.referrals_to_deliver("c")] == ["sr-2"]  # goes out again
    assert store.resolve_patient("c", None, "L-p2").effective_id == "p1"
    store.save_pull_page("c", [pulled("2", "p1", source_hash="h2", natural="p2")], [], None)
    assert store.referral("sr-2").patient_id == "p1"  # type: ignore[union-attr]

    assert store.unlink_patient("p2", actor="bob", reason="not the same") == ["sr-2"]
    assert store.referral("sr-2").patient_id == "p2"  # type: ignore[union-attr]
    kinds = [(e.kind, e.ended_at is not None) for e in store.patient_history("p2")]
    assert kinds == [("operator_link", True), ("operator_unlink", False)]
    actions = [(e.action, e.actor) for e in store.audit_events(action="patient.")]
    assert actions == [("patient.link", "alice"), ("patient.unlink", "bob")]


def test_impossible_links_are_refused(store: Store) -> None:
    from ehr_bridge.errors import ConflictError, TerminalError

    store.save_pull_page("c", [pulled("1", "p1"), pulled("2", "p2")], [], None)
    with pytest.raises(TerminalError):
        store.link_patients("p1", "nobody", actor="a", reason="r")
    with pytest.raises(ConflictError):
        store.link_patients("p1", "p1", actor="a", reason="r")
    store.link_patients("p1", "p2", actor="a", reason="r")
    with pytest.raises(ConflictError):
        store.link_patients("p2", "p1", actor="a", reason="r")  # p2 is itself linked
    with pytest.raises(ConflictError):
        store.unlink_patient("p1", actor="a", reason="r")  # p1 is not linked


def test_write_history_and_repairs_are_audited(store: Store) -> None:
    store.save_pull_page("c", [pulled("1", "p1")], [], None)
    store.mark_delivered(
        "sr-1", "x", [NewOutboxItem("k1", "sr-1", "care_contact", "Encounter", "e")]
    )
    store.finish_attempt("k1", state="pending", error="boom", error_code="http_503")
    store.finish_attempt("k1", state="done", trust_id="CC1", outcome="already_present")
    outcomes = [(a.outcome, a.error_code) for a in store.write_attempts(outbox_key="k1")]
    assert outcomes == [("retry", "http_503"), ("already_present", None)]
    assert store.requeue("k1", actor="alice", reason="deleted at the trust") is not None
    row = store.outbox_row("k1")
    assert row is not None and (row.state, row.attempts, row.trust_id) == ("pending", 0, None)
    assert store.requeue("k1", actor="alice", reason="again") is None  # pending: nothing to do
    assert store.adopt("k1", "CC2", actor="alice", reason="landed") is not None
    store.record_update("k1", actor="alice", reason="edited", outcome="updated", fields=["b", "a"])
    actions = [(e.action, e.outcome, e.trust_id) for e in store.audit_events()]
    assert actions == [
        ("trust.write", "already_present", "CC1"),
        ("reconcile.requeue", "queued", "CC1"),
        ("reconcile.adopt", "adopted", "CC2"),
        ("reconcile.overwrite", "updated", "CC2"),
    ]
    assert store.audit_events()[-1].detail == '{"fields":["a","b"],"kind":"care_contact"}'


def test_operator_retry_and_cancel_are_audited(store: Store) -> None:
    store.save_pull_page("c", [pulled("1", "p1")], [], None)
    items = [NewOutboxItem(k, "sr-1", "care_contact", "Encounter", k) for k in ("k1", "k2")]
    store.mark_delivered("sr-1", "x", items)
    store.finish_attempt("k1", state="dead", error="no", error_code="http_422")
    assert store.retry_dead(None, actor="carol") == ["k1"]
    store.cancel("k2", "test record", actor="carol")
    actions = [(e.action, e.actor, e.outbox_key) for e in store.audit_events()]
    assert actions[-2:] == [("outbox.retry", "carol", "k1"), ("outbox.cancel", "carol", "k2")]
    assert actions[0][0] == "trust.write"  # the dead letter itself


def test_a_migration_killed_half_way_leaves_the_schema_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon dying mid-upgrade must not leave half of 0002 behind (SQLite DDL too)."""
    import alembic.op
    from sqlalchemy import inspect

    from ehr_bridge.store.migrate import current_revision, head_revision, upgrade
    from ehr_bridge.store.store import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    upgrade(engine, "0001")

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # what a signal looks like half-way through

    with monkeypatch.context() as patch:
        patch.setattr(alembic.op, "create_index", killed)
        with pytest.raises(KeyboardInterrupt):
            upgrade(engine)
    assert current_revision(engine) == "0001"
    assert "audit_event" not in inspect(engine).get_table_names()
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    engine.dispose()
