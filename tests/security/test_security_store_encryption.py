"""At rest: resources and quarantined records sealed per row, key ids, rotation, 0600 file."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from security_flow import Flow, run_flow
from sqlmodel import select
from typer.testing import CliRunner

from ehr_bridge.cli.app import app
from ehr_bridge.errors import ConfigError
from ehr_bridge.security import IntegrityError, KeyRing, PayloadCipher, generate_key
from ehr_bridge.security.rotation import key_usage, rotate
from ehr_bridge.store import QuarantineRow, ResourceRow, Store
from ehr_bridge.store.migrate import current_revision


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flow, str]]:
    key = generate_key()
    flow = run_flow(tmp_path_factory.mktemp("sealed"), PayloadCipher(KeyRing.parse(key)))
    yield flow, key
    flow.store.close()


@pytest.fixture(scope="module")
def plain_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    flow = run_flow(tmp_path_factory.mktemp("plain"), None)
    flow.store.close()
    yield Path(flow.url.removeprefix("sqlite:///"))


def _copy(db: Path, tmp_path: Path) -> str:
    target = tmp_path / "state.db"
    shutil.copyfile(db, target)
    return f"sqlite:///{target}"


def _column_texts(url: str) -> list[str]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        bodies = [row[0] for row in db.execute("SELECT body FROM resource")]
        return bodies + [row[0] for row in db.execute("SELECT payload FROM quarantine")]


def test_no_name_contact_detail_or_note_text_is_readable_in_the_database(
    sealed: tuple[Flow, str],
) -> None:
    flow, _ = sealed
    texts = _column_texts(flow.url)
    values, notes = flow.patient_values(), flow.note_texts()
    assert len(texts) > 100 and len(values) > 20 and len(notes) > 10
    for text in texts:
        assert text.startswith("v1.")
        assert not any(v in text for v in values) and not any(n in text for n in notes)
    raw = Path(flow.url.removeprefix("sqlite:///")).read_bytes()
    for note in notes:
        assert note.encode() not in raw
    # known and documented: the patient table keeps NHS numbers in clear for identity matching


def test_every_payload_row_names_the_key_that_sealed_it(sealed: tuple[Flow, str]) -> None:
    flow, _ = sealed
    active = flow.store.cipher.active_id
    assert key_usage(flow.store) == {
        "quarantine": {active: flow.store.quarantine_count("sec")},
        "resource": {active: len(_column_texts(flow.url)) - flow.store.quarantine_count("sec")},
    }


def test_the_store_reads_back_what_it_sealed(sealed: tuple[Flow, str]) -> None:
    flow, _ = sealed
    store = flow.store
    referral = store.list_referrals("sec")[0]
    resources = store.resources_for_referral(referral.id)
    notes = [r for r in resources if r["resourceType"] == "DocumentReference"]
    assert notes and all(r["id"] for r in resources)
    patient = store.resource("Patient", referral.patient_id)
    assert patient is not None and patient["name"][0]["family"]
    entry = store.quarantine_rows(connection="sec")[0]
    payload = store.quarantine_payload(entry.id or 0)
    assert isinstance(payload, dict) and payload


def test_a_row_copied_onto_another_does_not_open(sealed: tuple[Flow, str], tmp_path: Path) -> None:
    flow, key = sealed
    url = _copy(Path(flow.url.removeprefix("sqlite:///")), tmp_path)
    store = Store(url, cipher=PayloadCipher(KeyRing.parse(key)))
    referral = store.list_referrals("sec")[0]
    with store.session() as s:
        patient = s.get(ResourceRow, ("Patient", referral.patient_id))
        request = s.get(ResourceRow, ("ServiceRequest", referral.id))
        assert patient is not None and request is not None
        request.body, request.key_id = patient.body, patient.key_id
        s.add(request)
    with pytest.raises(IntegrityError, match=f"ServiceRequest/{referral.id}"):
        store.resource("ServiceRequest", referral.id)
    store.close()


def test_a_row_under_a_key_the_ring_lost_is_a_config_error(
    sealed: tuple[Flow, str], tmp_path: Path
) -> None:
    flow, key = sealed
    url = _copy(Path(flow.url.removeprefix("sqlite:///")), tmp_path)
    lost = KeyRing.parse(key).active_id
    with pytest.raises(ConfigError, match=f"encrypted with key {lost}, but the configured"):
        Store(url, cipher=PayloadCipher(KeyRing.parse(generate_key())))  # refused on opening
    store = Store(url, cipher=PayloadCipher(KeyRing.parse(key)))
    with store.session() as s:  # a row on a key the ring lost, next to rows it can open
        row = s.get(ResourceRow, ("ServiceRequest", store.list_referrals("sec")[0].id))
        assert row is not None
        row.key_id = "0123456789abcdef"
        s.add(row)
    with pytest.raises(ConfigError, match="0123456789abcdef, which the keyring does not hold"):
        store.resources_for_referral(store.list_referrals("sec")[0].id)
    store.close()


def test_rotation_encrypts_plain_rows_then_moves_them_to_the_new_key(
    plain_db: Path, tmp_path: Path
) -> None:
    url = _copy(plain_db, tmp_path)
    first, second = generate_key(), generate_key()
    store = Store(url, cipher=PayloadCipher(KeyRing.parse(first)))
    before = key_usage(store)
    assert set(before["resource"]) == {"plain"}
    counts = rotate(store)
    assert counts.resealed["resource"] == before["resource"]["plain"]
    assert set(key_usage(store)["resource"]) == {store.cipher.active_id}
    store.close()
    both = Store(url, cipher=PayloadCipher(KeyRing.parse(f"{second}\n{first}")))
    assert sum(rotate(both, batch=7).resealed.values()) == sum(
        sum(c.values()) for c in before.values()
    )
    assert rotate(both).resealed == {}  # nothing left on the old key
    referral = both.list_referrals("sec")[0]
    expected = both.resources_for_referral(referral.id)
    both.close()
    only_new = Store(url, cipher=PayloadCipher(KeyRing.parse(second)))
    assert only_new.resources_for_referral(referral.id) == expected
    only_new.close()


def test_the_state_file_is_private_and_the_schema_has_key_columns(plain_db: Path) -> None:
    assert plain_db.stat().st_mode & 0o777 == 0o600
    store = Store(f"sqlite:///{plain_db}")
    assert current_revision(store.engine) is not None
    with store.session() as s:
        rows = s.exec(select(QuarantineRow.key_id, QuarantineRow.purged_at)).all()
    assert rows and all(key_id is None for key_id, _ in rows)
    store.close()


def _keys(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--config", str(config), "keys", *args])
    return result.exit_code, result.stdout


def test_keys_generate_status_and_rotate_from_the_command_line(
    plain_db: Path, tmp_path: Path
) -> None:
    url = _copy(plain_db, tmp_path)
    config = tmp_path / "ehr-bridge.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n\n[security]\nencryption_key_file = "secrets/keyring"\n'
    )
    keyring = tmp_path / "secrets" / "keyring"
    code, out = _keys(config, "generate", str(keyring))
    assert code == 0 and keyring.stat().st_mode & 0o777 == 0o600
    first_id = KeyRing.parse(keyring.read_text()).active_id
    assert first_id in out and keyring.read_text().strip() not in out
    code, out = _keys(config, "status", "--json")
    assert code == 0 and json.loads(out)["rows"]["resource"].keys() == {"plain"}
    assert _keys(config, "rotate")[0] == 0
    _keys(config, "generate", str(keyring))
    ring = KeyRing.parse(keyring.read_text())
    assert ring.ids[1] == first_id
    code, out = _keys(config, "rotate", "--json")
    assert code == 0 and json.loads(out)["active_key"] == ring.active_id
    status = json.loads(_keys(config, "status", "--json")[1])
    assert status["keys"] == ring.ids
    assert set(status["rows"]["resource"]) == {ring.active_id}


def test_keys_rotate_without_a_key_is_a_configuration_error(tmp_path: Path) -> None:
    config = tmp_path / "ehr-bridge.toml"
    config.write_text('[database]\nurl = "sqlite:///state.db"\n')
    code, _ = _keys(config, "rotate")
    assert code == 2
