"""Migrations: SQLite upgrades itself; PostgreSQL waits for `ehr-bridge db upgrade`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from ehr_bridge.cli.app import app
from ehr_bridge.errors import ConfigError
from ehr_bridge.store import Store
from ehr_bridge.store.migrate import current_revision, head_revision

TABLES = {
    "cursor",
    "referral",
    "patient",
    "resource",
    "outbox",
    "quarantine",
    "submission",
    "run",
    "flow_lease",
}


def test_sqlite_store_upgrades_itself_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ehr-bridge.db"
    store = Store(f"sqlite:///{path}")
    assert current_revision(store.engine) == head_revision()
    assert set(inspect(store.engine).get_table_names()) >= TABLES
    assert path.stat().st_mode & 0o777 == 0o600
    store.close()


def _config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "ehr-bridge.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    return config


def test_db_upgrade_and_current_commands(tmp_path: Path) -> None:
    config = _config(tmp_path, "sqlite:///state.db")
    runner = CliRunner()
    first = runner.invoke(app, ["--config", str(config), "db", "upgrade"])
    assert first.exit_code == 0 and "upgraded from empty" in first.stdout
    again = runner.invoke(app, ["--config", str(config), "db", "upgrade"])
    assert again.exit_code == 0 and "already at" in again.stdout
    current = runner.invoke(app, ["--config", str(config), "db", "current", "--json"])
    assert '"up_to_date": true' in current.stdout


@pytest.mark.postgres
def test_postgres_store_refuses_an_old_schema_until_upgraded(tmp_path: Path) -> None:
    url = os.environ.get("EHR_BRIDGE_TEST_DATABASE_URL")
    if not url:
        pytest.skip("EHR_BRIDGE_TEST_DATABASE_URL is not set")
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    with pytest.raises(ConfigError, match="ehr-bridge db upgrade"):
        Store(url)
    result = CliRunner().invoke(app, ["--config", str(_config(tmp_path, url)), "db", "upgrade"])
    assert result.exit_code == 0, result.output
    store = Store(url)
    assert set(inspect(store.engine).get_table_names()) >= TABLES
    store.close()


def test_the_schema_check_agrees_with_alembic(tmp_path: Path) -> None:
    """The head and the current revision are read without Alembic, and match what it says."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from ehr_bridge.store.migrate import _config, upgrade

    assert head_revision() == ScriptDirectory.from_config(_config()).get_current_head()
    engine = create_engine(f"sqlite:///{tmp_path / 'check.db'}")
    assert current_revision(engine) is None
    for revision in ("0001", "head"):
        upgrade(engine, revision)
        with engine.connect() as connection:
            assert (
                current_revision(engine)
                == MigrationContext.configure(connection).get_current_revision()
            )
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_opening_a_store_imports_no_alembic(tmp_path: Path) -> None:
    import subprocess
    import sys

    Store(f"sqlite:///{tmp_path / 'state.db'}").close()  # created and upgraded here
    probe = (
        "import sys; from ehr_bridge.store import Store;"
        f"Store('sqlite:///{tmp_path / 'state.db'}').close();"
        "print('alembic' in sys.modules)"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": src},
    )
    assert done.stdout.strip() == "False"
