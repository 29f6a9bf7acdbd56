"""Schema migrations (Alembic) for both backends, driven from code: no alembic.ini to ship.

SQLite, the embedded default, is upgraded when the store opens, so the demo and a single
daemon just work. PostgreSQL is upgraded only by ``ehr-bridge db upgrade``, run by trust
IT as an explicit step of an upgrade; a daemon finding an older schema refuses to start
and says so, rather than migrating under other daemons' feet.

Every command that opens the store asks whether the schema is current, so that question
is answered without importing Alembic (a fifth of a short command's start): the head is
read from the revision files' ``revision``/``down_revision`` lines, the database's
revision from Alembic's version table. Anything unusual (branches, several heads in the
table) is left to Alembic itself. Alembic is imported to upgrade or to write a revision.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: Alembic's default version table, which ``migrations/env.py`` keeps
VERSION_TABLE = "alembic_version"
#: ``revision = "0006"`` and ``down_revision: str | None = "0005"`` lines of a revision file
_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.+?)\s*$", re.MULTILINE)
_READ_VERSION = f"SELECT version_num FROM {VERSION_TABLE}"  # noqa: S608 (a constant)


def _config() -> Config:
    from alembic.config import Config  # only to migrate

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _revision_of(path: Path) -> tuple[str | None, tuple[str, ...]]:
    """A revision file's ``revision`` and its ``down_revision`` ids, read without running it."""
    found = {
        m.group(1): ast.literal_eval(m.group(2))
        for m in _ASSIGNMENT.finditer(path.read_text("utf-8"))
    }
    down = found.get("down_revision")
    downs = () if down is None else (down,) if isinstance(down, str) else tuple(down)
    return found.get("revision"), downs


def head_revision() -> str:
    """The newest migration shipped with this version of ehr-bridge."""
    revisions = [_revision_of(p) for p in sorted((MIGRATIONS / "versions").glob("*.py"))]
    replaced = {down for _, downs in revisions for down in downs}
    heads = [rev for rev, _ in revisions if rev is not None and rev not in replaced]
    if len(heads) == 1:
        return heads[0]
    return _alembic_head()  # branches, or nothing shipped: Alembic says what is wrong


def _alembic_head() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at (None for an empty database)."""
    with engine.connect() as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        found = connection.execute(text(_READ_VERSION)).all()
        if len(found) <= 1:
            return str(found[0][0]) if found else None
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(connection).get_current_revision()  # it raises


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` in one transaction, DDL included, on both backends.

    A daemon killed while it upgrades must leave the schema as it was, or the next start
    would find half a migration and refuse to run.
    """
    from alembic import command  # only to migrate

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
    from alembic import command  # only to migrate

    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)
