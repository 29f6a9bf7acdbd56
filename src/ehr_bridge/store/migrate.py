"""Schema migrations (Alembic) for both backends, driven from code: no alembic.ini to ship.

SQLite, the embedded default, is upgraded when the store opens, so the demo and a single
daemon just work. PostgreSQL is upgraded only by ``ehr-bridge db upgrade``, run by trust
IT as an explicit step of an upgrade; a daemon finding an older schema refuses to start
and says so, rather than migrating under other daemons' feet.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest migration shipped with this version of ehr-bridge."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at (None for an empty database)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` in one transaction, DDL included, on both backends.

    A daemon killed while it upgrades must leave the schema as it was, or the next start
    would find half a migration and refuse to run.
    """
    config = _config()
    with _transactional_ddl(engine) as migrating, migrating.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@contextmanager
def _transactional_ddl(engine: Engine) -> Iterator[Engine]:
    """An engine whose transactions cover DDL (PostgreSQL's do already).

    The sqlite3 driver commits before each CREATE or ALTER on its own, so on SQLite a
    dedicated engine takes over transaction control and opens each one with ``BEGIN
    IMMEDIATE`` (which also makes a second daemon starting at the same moment wait).
    An in-memory database cannot be opened twice, so it is migrated as it is.
    """
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        yield engine
        return
    dedicated = create_engine(engine.url)
    event.listen(dedicated, "connect", _driver_leaves_transactions_to_us)
    event.listen(dedicated, "begin", _begin_immediate)
    try:
        yield dedicated
    finally:
        dedicated.dispose()


def _driver_leaves_transactions_to_us(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA busy_timeout=30000")


def _begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def new_revision(engine: Engine, message: str) -> None:
    """Autogenerate a migration from the models (developers: `make migration`)."""
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)
