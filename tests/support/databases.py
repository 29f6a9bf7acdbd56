"""Database URLs for backend-parametrised tests: SQLite always, PostgreSQL when configured."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ehr_bridge.store.migrate import upgrade

POSTGRES_ENV = "EHR_BRIDGE_TEST_DATABASE_URL"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def database_url(backend: str, tmp_path: Path) -> str:
    """A fresh, empty database of the given backend."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    _reset_postgres(url)
    return url


def _reset_postgres(url: str) -> None:
    """Empty the test database, then migrate it as `ehr-bridge db upgrade` would."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    engine.dispose()
